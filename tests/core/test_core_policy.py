"""Firmware versions and the PIN policy table (chargepin.core.policy)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core.action_policy import ActionNotAllowed, authorize
from chargepin.core.errors import InvalidVersion
from chargepin.core.policy import (
    MANDATORY_FIRMWARE,
    MANDATORY_MODELS_FROM,
    OPTIONAL_FIRMWARE,
    FirmwareVersion,
    PinMode,
    PinPolicy,
    offers_pin_setup,
    pin_policy,
)
from chargepin.core.tickets import Action

OLD = datetime.date(2024, 1, 1)
BEFORE = datetime.date(2025, 7, 31)
FROM = datetime.date(2025, 8, 1)
LATER = datetime.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("6", (6,)),
        ("6.11", (6, 11)),
        ("6.7.17", (6, 7, 17)),
        ("6.11.0.1", (6, 11, 0, 1)),
        (" 6.11 ", (6, 11)),
        ("06.011", (6, 11)),
    ],
)
def test_parse(text: str, parts: tuple[int, ...]) -> None:
    assert FirmwareVersion.parse(text).parts == parts


@pytest.mark.parametrize(
    "text",
    ["", " ", "6..1", "v6.1", "6.1-beta", ".6", "6.", "6.1.2.3.4", "6,11", "6.1 1", "6.١", "-6.1"],
)
def test_parse_rejects_with_expected_form(text: str) -> None:
    with pytest.raises(InvalidVersion, match=r"like 6\.11 or 6\.7\.17"):
        FirmwareVersion.parse(text)


@pytest.mark.parametrize("text", ["9" * 4301, "1234567", "6.1234567", "2." + "3" * 40])
def test_parse_bounds_each_component_to_six_digits(text: str) -> None:
    """Before, 4,301 digits raised ValueError (Python's int() limit), not InvalidVersion, and
    long versions overflowed the fleet's String(32) columns."""
    with pytest.raises(InvalidVersion, match="up to 6 digits") as refused:
        FirmwareVersion.parse(text)
    assert len(str(refused.value)) < 200


def test_the_longest_version_fits_32_characters() -> None:
    longest = FirmwareVersion.parse("999999.999999.999999.999999")
    assert longest.parts == (999999,) * 4 and len(str(longest)) <= 32


@pytest.mark.parametrize(
    "parts", [(), (1, 2, 3, 4, 5), (6, -1), (6, True), [6, 11], (6, 1_000_000)]
)
def test_construction_validates(parts: object) -> None:
    with pytest.raises(InvalidVersion):
        FirmwareVersion(parts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("6.7.16", "6.7.17"),
        ("6.7.17", "6.11.0"),
        ("6.7.17", "6.10"),
        ("6.10.99", "6.11"),
        ("6.9", "6.10"),
        ("6.11", "6.11.0.1"),
        ("6.11.9", "6.12"),
        ("6.99", "7"),
        ("6", "6.0.0.1"),
    ],
)
def test_ordering_is_numeric_per_component(lower: str, higher: str) -> None:
    low, high = FirmwareVersion.parse(lower), FirmwareVersion.parse(higher)
    assert low < high
    assert low <= high
    assert high > low
    assert high >= low
    assert low != high


@pytest.mark.parametrize(("a", "b"), [("6.11", "6.11.0"), ("7", "7.0.0.0"), ("0", "0.0")])
def test_trailing_zeros_are_insignificant(a: str, b: str) -> None:
    va, vb = FirmwareVersion.parse(a), FirmwareVersion.parse(b)
    assert va == vb
    assert hash(va) == hash(vb)
    assert va <= vb
    assert va >= vb
    assert str(va) == a
    assert str(vb) == b


def test_not_equal_to_other_types() -> None:
    assert FirmwareVersion.parse("6.11") != "6.11"
    with pytest.raises(TypeError):
        _ = FirmwareVersion.parse("6.11") < "6.12"


versions = st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4).map(tuple)


@given(versions, versions)
def test_order_matches_padded_tuples(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    va, vb = FirmwareVersion(a), FirmwareVersion(b)
    pa, pb = a + (0,) * (4 - len(a)), b + (0,) * (4 - len(b))
    assert (va < vb) == (pa < pb)
    assert (va == vb) == (pa == pb)
    assert FirmwareVersion.parse(str(va)) == va


@pytest.mark.parametrize(
    ("model", "firmware", "produced", "mode"),
    [
        # firmware alone, any other model
        ("Pulsar Plus", "6.7.16", LATER, PinMode.UNSUPPORTED),
        ("Pulsar Plus", "6.7.17", LATER, PinMode.OPTIONAL),
        ("Pulsar Plus", "6.7.18", OLD, PinMode.OPTIONAL),
        ("Pulsar Plus", "6.10.5", OLD, PinMode.OPTIONAL),
        ("Pulsar Plus", "6.10.99", OLD, PinMode.OPTIONAL),
        ("Pulsar Plus", "6.11", OLD, PinMode.MANDATORY),
        ("Pulsar Plus", "6.11.0", OLD, PinMode.MANDATORY),
        ("Pulsar Plus", "6.12", OLD, PinMode.MANDATORY),
        ("Pulsar Plus", "7.0", OLD, PinMode.MANDATORY),
        ("Copper SB", "5.9", OLD, PinMode.UNSUPPORTED),
        ("Commander 2", "6.7", LATER, PinMode.UNSUPPORTED),
        # mandatory models: the production date decides, whatever the firmware
        ("Pulsar Max", "6.7.16", BEFORE, PinMode.UNSUPPORTED),
        ("Pulsar Max", "6.7.16", FROM, PinMode.MANDATORY),
        ("Pulsar Max", "6.7.17", BEFORE, PinMode.OPTIONAL),
        ("Pulsar Max", "6.7.17", FROM, PinMode.MANDATORY),
        ("Pulsar Max", "6.11", BEFORE, PinMode.MANDATORY),
        ("Pulsar Max", "6.11", FROM, PinMode.MANDATORY),
        ("Pulsar Pro", "6.5", BEFORE, PinMode.UNSUPPORTED),
        ("Pulsar Pro", "6.5", FROM, PinMode.MANDATORY),
        ("Pulsar Pro", "6.8", BEFORE, PinMode.OPTIONAL),
        ("Pulsar Pro", "6.8", LATER, PinMode.MANDATORY),
        ("Pulsar Pro", "6.12", BEFORE, PinMode.MANDATORY),
        ("  pulsar   PRO ", "6.8", FROM, PinMode.MANDATORY),
        ("PULSAR MAX", "6.0", FROM, PinMode.MANDATORY),
        ("Pulsar Maxi", "6.0", FROM, PinMode.UNSUPPORTED),
        ("Pulsar Plus", "6.0", FROM, PinMode.UNSUPPORTED),
    ],
)
def test_policy_table(model: str, firmware: str, produced: datetime.date, mode: PinMode) -> None:
    policy = pin_policy(model, FirmwareVersion.parse(firmware), produced)
    assert policy.mode is mode
    assert policy.changeable == (mode is PinMode.MANDATORY)
    assert policy.can_disable == (mode is PinMode.OPTIONAL)


@pytest.mark.parametrize(
    ("model", "firmware", "produced", "reason"),
    [
        ("Pulsar Plus", "6.12", OLD, "firmware 6.12 is 6.11 or higher: PIN is mandatory"),
        (
            " pulsar max",
            "6.0",
            FROM,
            "Pulsar Max produced on or after 2025-08-01: PIN is mandatory",
        ),
        ("Pulsar Plus", "6.7.17", OLD, "firmware 6.7.17 is 6.7.17 or higher: PIN is optional"),
        (
            "Pulsar Plus",
            "6.7.16",
            OLD,
            "firmware 6.7.16 does not support a PIN; update the charger to 6.7.17 or higher",
        ),
    ],
)
def test_policy_reasons(model: str, firmware: str, produced: datetime.date, reason: str) -> None:
    assert reason in pin_policy(model, FirmwareVersion.parse(firmware), produced).reason


def test_policy_accepts_a_datetime_as_production_date() -> None:
    produced = datetime.datetime(2025, 8, 1, 0, 0, 1)
    assert pin_policy("Pulsar Max", FirmwareVersion.parse("6.0"), produced).mode is (
        PinMode.MANDATORY
    )


def test_policy_takes_only_a_parsed_version() -> None:
    """Firmware is parsed where it enters (an option, a bundle, a column), never re-parsed."""
    with pytest.raises(InvalidVersion, match="parse it where it enters"):
        pin_policy("Pulsar Plus", "6.11", OLD)  # type: ignore[arg-type]


def test_constants() -> None:
    assert str(MANDATORY_FIRMWARE) == "6.11"
    assert str(OPTIONAL_FIRMWARE) == "6.7.17"
    assert MANDATORY_MODELS_FROM == FROM
    assert PinMode("mandatory") is PinMode.MANDATORY
    assert f"{PinMode.OPTIONAL}" == "optional"


OPTIONAL = pin_policy("Pulsar Plus", FirmwareVersion.parse("6.7.17"), OLD)
MANDATORY = pin_policy("Pulsar Plus", FirmwareVersion.parse("6.11"), OLD)
MANDATORY_MODEL = pin_policy("Pulsar Max", FirmwareVersion.parse("6.8"), FROM)
UNSUPPORTED = pin_policy("Pulsar Plus", FirmwareVersion.parse("6.7.16"), OLD)


def test_the_pin_setup_pop_up_is_offered_to_the_owner_of_an_optional_charger_with_the_pin_off() -> (
    None
):
    assert offers_pin_setup(OPTIONAL, pin_enabled=False, is_owner=True)


@pytest.mark.parametrize(
    ("policy", "pin_enabled", "is_owner", "enabling", "dismissed"),
    [
        (OPTIONAL, True, True, False, False),  # the PIN is on already
        (OPTIONAL, False, False, False, False),  # an invited user cannot enable it
        (OPTIONAL, False, True, True, False),  # an enable_pin is on its way
        (OPTIONAL, False, True, False, True),  # the owner said "Not now"
        (MANDATORY, False, True, False, False),  # always on: nothing to set up
        (MANDATORY, True, True, False, False),
        (MANDATORY_MODEL, False, True, False, False),
        (UNSUPPORTED, False, True, False, False),  # the firmware has no PIN: update it
    ],
)
def test_the_pin_setup_pop_up_is_not_offered(
    policy: PinPolicy, pin_enabled: bool, is_owner: bool, enabling: bool, dismissed: bool
) -> None:
    assert not offers_pin_setup(
        policy, pin_enabled=pin_enabled, is_owner=is_owner, enabling=enabling, dismissed=dismissed
    )


@pytest.mark.parametrize("policy", [OPTIONAL, MANDATORY, MANDATORY_MODEL, UNSUPPORTED])
@pytest.mark.parametrize("pin_enabled", [False, True])
def test_the_pop_up_never_offers_an_enable_pin_the_action_rule_refuses(
    policy: PinPolicy, pin_enabled: bool
) -> None:
    """What the pop-up offers, `authorize` (the charger's rule for enable_pin) allows."""
    if offers_pin_setup(policy, pin_enabled=pin_enabled, is_owner=True):
        authorize(policy, pin_enabled, Action.ENABLE_PIN)
    elif policy.mode is not PinMode.MANDATORY:
        with pytest.raises(ActionNotAllowed):
            authorize(policy, pin_enabled, Action.ENABLE_PIN)
