"""PIN epochs and PIN fingerprints (chargepin.core.epochs)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import derive_key
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.pin import Pin, weakness

SECRET = bytes(range(32))
SERIAL = "CP-0001"

# The published vectors (docs/PROTOCOL.md). Epoch 13's first candidate (160160) is weak
# and epoch 1944's first sample is above the rejection limit: both take counter 1.
VECTORS = [
    (0, "063057", "661210c1ea07694e"),
    (1, "588876", "03c1de83d0cfd9a6"),
    (2, "738693", "796aae81e900d778"),
    (3, "585902", "2346416dbfe15ab5"),
    (13, "306310", "b170f09f9012bdd7"),
    (1000, "011424", "df6748148975842b"),
    (1944, "244464", "9e4b5f73703ede1f"),
]


# Generation > 0 (a re-key): the generation as 4 bytes BE after the counter (docs/PROTOCOL.md).
GENERATION_VECTORS = [
    (1, 0, "137952", "1eea0ecbf1899272"),
    (1, 1, "812458", "2877debf4abd930e"),
    (2, 0, "533595", "838ff616632a4e73"),
    (2**32 - 1, 7, "978147", "bc2cb49b3e43b19e"),
]


def documented_epoch_pin(
    secret: bytes, serial: str, epoch: int, generation: int = 0
) -> tuple[str, int]:
    """The derivation as docs/PROTOCOL.md spells it out; returns (PIN, counter used)."""
    key = derive_key(secret, serial, "epoch-pin")
    tail = generation.to_bytes(4, "big") if generation else b""
    for counter in range(100):
        message = epoch.to_bytes(8, "big") + counter.to_bytes(4, "big") + tail
        mac = hmac.digest(key, message, "sha256")
        x = int.from_bytes(mac[:4], "big")
        if x >= 4_294_000_000:
            continue
        candidate = f"{x % 1_000_000:06d}"
        if weakness(candidate) is None:
            return candidate, counter
    raise AssertionError("no PIN within 100 counters")


@pytest.mark.parametrize(("epoch", "digits", "fingerprint"), VECTORS)
def test_vectors(epoch: int, digits: str, fingerprint: str) -> None:
    pin = epoch_pin(SECRET, SERIAL, epoch)
    assert pin.digits == digits
    assert pin_fingerprint(SECRET, SERIAL, pin).hex() == fingerprint


@pytest.mark.parametrize(("generation", "epoch", "digits", "fingerprint"), GENERATION_VECTORS)
def test_generation_vectors(generation: int, epoch: int, digits: str, fingerprint: str) -> None:
    pin = epoch_pin(SECRET, SERIAL, epoch, generation)
    assert pin.digits == digits == documented_epoch_pin(SECRET, SERIAL, epoch, generation)[0]
    assert pin_fingerprint(SECRET, SERIAL, pin).hex() == fingerprint


def test_generation_0_is_the_original_sequence() -> None:
    for epoch, digits, _fingerprint in VECTORS:
        assert epoch_pin(SECRET, SERIAL, epoch, 0).digits == digits


def test_a_new_generation_shares_nothing_with_the_harvested_one() -> None:
    """Issue 9: 1,000 harvested PINs of generation 0 say nothing about generation 1's."""
    harvested = [epoch_pin(SECRET, SERIAL, epoch, 0) for epoch in range(1000)]
    fresh = [epoch_pin(SECRET, SERIAL, epoch, 1) for epoch in range(1000)]
    same_place = sum(a == b for a, b in zip(harvested, fresh, strict=True))
    assert same_place <= 2  # chance: 1,000 draws from ~900,000 PINs
    assert len(set(fresh) & set(harvested)) <= 10


@pytest.mark.parametrize("generation", [-1, 2**32, True, 1.0, "1"])
def test_generation_must_be_a_u32(generation: object) -> None:
    with pytest.raises(InvalidConfig, match="generation must be a whole number"):
        epoch_pin(SECRET, SERIAL, 0, generation)  # type: ignore[arg-type]


def test_vectors_cover_both_rejection_paths() -> None:
    assert documented_epoch_pin(SECRET, SERIAL, 13)[1] == 1
    assert documented_epoch_pin(SECRET, SERIAL, 1944)[1] == 1
    key = derive_key(SECRET, SERIAL, "epoch-pin")
    first = hmac.digest(key, (1944).to_bytes(8, "big") + bytes(4), "sha256")
    assert int.from_bytes(first[:4], "big") >= 4_294_000_000


def test_fingerprint_is_the_documented_hmac() -> None:
    key = derive_key(SECRET, SERIAL, "fingerprint")
    expected = hmac.digest(key, b"pin:042917", hashlib.sha256)[:8]
    assert pin_fingerprint(SECRET, SERIAL, Pin("042917")) == expected


@given(st.integers(min_value=0, max_value=MAX_EPOCH))
@example(MAX_EPOCH)  # the last epoch the air carries, still hashed as 8 bytes
def test_matches_the_documented_derivation_and_is_never_weak(epoch: int) -> None:
    pin = epoch_pin(SECRET, SERIAL, epoch)
    assert pin.digits == documented_epoch_pin(SECRET, SERIAL, epoch)[0]
    assert weakness(pin.digits) is None
    assert epoch_pin(SECRET, SERIAL, epoch) == pin


def test_epochs_serials_and_secrets_give_different_pins() -> None:
    by_epoch = {epoch_pin(SECRET, SERIAL, epoch) for epoch in range(200)}
    assert len(by_epoch) >= 195  # 200 draws from ~10**6: a few collisions at most
    others = [
        epoch_pin(SECRET, "CP-0002", 0),
        epoch_pin(bytes(32), SERIAL, 0),
        epoch_pin(SECRET, SERIAL, 1),
    ]
    assert epoch_pin(SECRET, SERIAL, 0) not in others


def test_fingerprints_differ_by_pin_serial_and_secret() -> None:
    pin = Pin("042917")
    prints = {
        pin_fingerprint(SECRET, SERIAL, pin),
        pin_fingerprint(SECRET, SERIAL, Pin("042918")),
        pin_fingerprint(SECRET, "CP-0002", pin),
        pin_fingerprint(bytes(32), SERIAL, pin),
    }
    assert len(prints) == 4
    assert all(len(fingerprint) == 8 for fingerprint in prints)


def test_first_digit_is_roughly_uniform() -> None:
    """Chi-square on the first digit over 5000 epochs (9 degrees of freedom).

    The inputs are fixed, so this is deterministic; 33.7 is the p = 0.0001 critical value.
    """
    samples = 5000
    counts = Counter(epoch_pin(SECRET, SERIAL, epoch).digits[0] for epoch in range(samples))
    expected = samples / 10
    chi_square = sum((counts[d] - expected) ** 2 / expected for d in "0123456789")
    assert chi_square < 33.7


@pytest.mark.parametrize("epoch", [-1, MAX_EPOCH + 1, 2**64, True, 1.0, "3"])
def test_epoch_must_be_a_u32_as_on_the_air(epoch: object) -> None:
    with pytest.raises(InvalidConfig, match="epoch"):
        epoch_pin(SECRET, SERIAL, epoch)  # type: ignore[arg-type]


def test_wrong_secret_size_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="32 bytes"):
        epoch_pin(bytes(16), SERIAL, 0)
    with pytest.raises(InvalidConfig):
        pin_fingerprint(bytes(16), SERIAL, Pin("042917"))
