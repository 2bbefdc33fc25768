"""Pin values, the weak-PIN rules and PIN generation (chargepin.core.pin)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core.errors import InvalidPin, WeakPin
from chargepin.core.pin import Pin, generate_pin, weakness


def _weak_by_definition() -> set[str]:
    """The weak PINs built from the rules' definitions, independently of `weakness`."""
    weak = {str(d) * 6 for d in range(10)}
    weak |= {"".join(str(start + i) for i in range(6)) for start in range(5)}
    weak |= {"".join(str(start - i) for i in range(6)) for start in range(5, 10)}
    weak |= {f"{n:02d}" * 3 for n in range(100)}
    weak |= {f"{n:03d}" * 2 for n in range(1000)}
    return weak


WEAK = _weak_by_definition()


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("042917", "042917"),
        ("  042917\n", "042917"),
        ("\t000001 ", "000001"),
        ("999999", "999999"),
    ],
)
def test_parse_accepts_six_ascii_digits(text: str, digits: str) -> None:
    assert Pin.parse(text).digits == digits


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("04291", "PIN must be exactly 6 digits, got 5: '04291'"),
        ("0429171", "got 7: '0429171'"),
        ("", "got 0: ''"),
        ("   ", "got 0: ''"),
        ("12a456", "'a'"),
        ("١٢٣٤٥٦", "ARABIC-INDIC DIGIT ONE"),
        ("12345²", "SUPERSCRIPT TWO"),
        ("+12345", "'+'"),
        ("-12345", "'-'"),
        ("123 456", "' ' (SPACE) at position 4"),
        ("12.345", "'.'"),
        ("０１２３４５", "FULLWIDTH DIGIT ZERO"),
    ],
)
def test_parse_rejects_with_what_is_wrong(text: str, message_part: str) -> None:
    with pytest.raises(InvalidPin) as caught:
        Pin.parse(text)
    assert message_part in str(caught.value)
    assert "Charger Info" in str(caught.value)


@pytest.mark.parametrize("digits", ["12a", "", " 123456", "1234567", "12345６"])
def test_direct_construction_validates(digits: str) -> None:
    with pytest.raises(InvalidPin):
        Pin(digits)


@pytest.mark.parametrize("value", [123456, None, b"123456"])
def test_non_text_is_invalid_pin(value: object) -> None:
    with pytest.raises(InvalidPin, match="string"):
        Pin(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidPin):
        Pin.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("passkey", "digits"), [(0, "000000"), (42917, "042917"), (7, "000007"), (999999, "999999")]
)
def test_from_passkey_zero_pads(passkey: int, digits: str) -> None:
    pin = Pin.from_passkey(passkey)
    assert pin.digits == digits
    assert str(pin) == digits
    assert pin.passkey == passkey


@pytest.mark.parametrize("passkey", [-1, 1_000_000, 10**12, True, 1.0, "1"])
def test_from_passkey_rejects_out_of_range(passkey: object) -> None:
    with pytest.raises(InvalidPin):
        Pin.from_passkey(passkey)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=999_999))
def test_passkey_round_trip(passkey: int) -> None:
    pin = Pin.from_passkey(passkey)
    assert Pin.parse(str(pin)) == pin
    assert pin.passkey == passkey


def test_repr_never_shows_the_digits() -> None:
    pin = Pin("042917")
    assert repr(pin) == "Pin(******)"
    assert "042917" not in repr([pin])
    assert "042917" not in f"{pin!r}"


def test_pins_are_values() -> None:
    assert Pin("042917") == Pin.parse(" 042917 ")
    assert len({Pin("042917"), Pin.from_passkey(42917)}) == 1
    with pytest.raises(AttributeError):
        Pin("042917").digits = "000000"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("digits", "reason_part"),
    [
        ("000000", "same"),
        ("111111", "same"),
        ("999999", "same"),
        ("012345", "up"),
        ("123456", "up"),
        ("234567", "up"),
        ("456789", "up"),
        ("987654", "down"),
        ("654321", "down"),
        ("543210", "down"),
        ("121212", "2-digit pattern 12"),
        ("909090", "2-digit pattern 90"),
        ("123123", "3-digit pattern 123"),
        ("100100", "3-digit pattern 100"),
    ],
)
def test_weak_pins_have_a_reason(digits: str, reason_part: str) -> None:
    reason = weakness(digits)
    assert reason is not None
    assert reason_part in reason


@pytest.mark.parametrize(
    "digits",
    ["042917", "890123", "901234", "789012", "098765", "210987", "112233", "123321", "121213"],
)
def test_strong_pins_including_wrapping_runs(digits: str) -> None:
    assert weakness(digits) is None


def test_weak_set_is_exactly_the_rules() -> None:
    assert len(WEAK) == 1100
    assert all(weakness(digits) is not None for digits in WEAK)


@given(st.integers(min_value=0, max_value=999_999))
def test_weakness_matches_the_definition(n: int) -> None:
    digits = f"{n:06d}"
    assert (weakness(digits) is not None) == (digits in WEAK)


def test_weakness_validates_its_input() -> None:
    with pytest.raises(InvalidPin):
        weakness("12345")


def test_parse_accepts_weak_but_parse_strong_refuses_with_reason() -> None:
    assert Pin.parse("111111").digits == "111111"
    with pytest.raises(WeakPin) as caught:
        Pin.parse_strong(" 123456 ")
    assert caught.value.reason == "the digits count straight up"
    assert "choose another PIN" in str(caught.value)
    assert Pin.parse_strong("042917") == Pin("042917")
    with pytest.raises(InvalidPin):
        Pin.parse_strong("12345")


@given(st.integers(min_value=0, max_value=2**32))
def test_generated_pins_are_never_weak(seed: int) -> None:
    pin = generate_pin(random.Random(seed))
    assert weakness(pin.digits) is None


def test_generate_pin_defaults_to_system_randomness_and_spreads() -> None:
    pins = {generate_pin() for _ in range(200)}
    assert len(pins) > 190
    rng = random.Random(1)
    first_digits = [generate_pin(rng).digits[0] for _ in range(5000)]
    assert set(first_digits) == set("0123456789")


def test_generate_pin_skips_weak_draws() -> None:
    class Scripted(random.Random):
        """Returns weak candidates first; proves generate_pin draws again."""

        def __init__(self) -> None:
            super().__init__(0)
            self.draws = iter([111111, 123456, 121212, 42917])

        def randrange(self, *args: object, **kwargs: object) -> int:
            return next(self.draws)

    assert generate_pin(Scripted()) == Pin("042917")
