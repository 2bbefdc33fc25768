"""The one table of SMP Pairing Failed reasons and their meaning (chargepin.core.smp)."""

from __future__ import annotations

import pytest
from bumble import smp as bumble_smp

from chargepin.core.attempts import AttemptKind, Refusal
from chargepin.core.smp import (
    REFUSAL_CODES,
    WRONG_PIN_CODES,
    SmpError,
    attempt_kind,
    describe,
    refusal_of,
)


def test_the_codes_are_the_specs_and_bumbles() -> None:
    """Core has no Bluetooth stack; what it sends must still be what Bumble puts on the air."""
    for code in bumble_smp.ErrorCode:
        assert SmpError(int(code)) == code
        assert SmpError(int(code)).name.replace("BR_EDR", "BD_EDR") == code.name


def test_each_refusal_has_its_documented_reason() -> None:
    """docs/PROTOCOL.md, "Pairing": locked 0x09, busy 0x08, Just Works or legacy 0x03."""
    assert dict(REFUSAL_CODES) == {
        Refusal.LOCKED: SmpError.REPEATED_ATTEMPTS,
        Refusal.BUSY: SmpError.UNSPECIFIED_REASON,
        Refusal.NEEDS_PASSKEY: SmpError.AUTHENTICATION_REQUIREMENTS,
    }
    assert set(REFUSAL_CODES) == set(Refusal)
    for refusal, code in REFUSAL_CODES.items():
        assert refusal_of(code) is refusal


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (0x04, AttemptKind.WRONG_PIN),
        (0x0B, AttemptKind.WRONG_PIN),
        (0x01, AttemptKind.CANCELLED),
        (0x05, AttemptKind.FAILED),
        (0x08, AttemptKind.FAILED),
        (0x00, AttemptKind.FAILED),
        (0xFF, AttemptKind.FAILED),
    ],
)
def test_how_a_served_attempt_is_counted_by_its_reason(reason: int, kind: AttemptKind) -> None:
    assert attempt_kind(reason) is kind


def test_wrong_pin_codes_and_what_phones_read() -> None:
    assert {SmpError.CONFIRM_VALUE_FAILED, SmpError.DHKEY_CHECK_FAILED} == WRONG_PIN_CODES
    assert refusal_of(0x04) is None
    assert refusal_of(0x42) is None


def test_describe_names_the_code_and_its_meaning() -> None:
    assert describe(0x04) == "0x04 CONFIRM_VALUE_FAILED (wrong PIN)"
    assert describe(0x05) == "0x05 PAIRING_NOT_SUPPORTED"
    assert describe(0x42) == "0x42 (unknown reason)"
