"""SMP Pairing Failed reasons and what each one means here: the one table.

The charger answers a refused Pairing Request with the reason its `Refusal` maps to and counts
a served attempt that failed by the reason it failed with; the phone and the lab read the same
reasons back (docs/PROTOCOL.md, "Pairing"). The codes are the Core spec's (Vol 3 Part H 3.5.5,
Table 3.7): numbers only, no Bluetooth stack (Bumble's `smp.ErrorCode` has the same values and
compares equal; a test checks).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from chargepin.core.attempts import AttemptKind, Refusal


class SmpError(enum.IntEnum):
    """Reason codes of the SMP Pairing Failed PDU (Core spec Vol 3 Part H 3.5.5)."""

    PASSKEY_ENTRY_FAILED = 0x01
    OOB_NOT_AVAILABLE = 0x02
    AUTHENTICATION_REQUIREMENTS = 0x03
    CONFIRM_VALUE_FAILED = 0x04
    PAIRING_NOT_SUPPORTED = 0x05
    ENCRYPTION_KEY_SIZE = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    UNSPECIFIED_REASON = 0x08
    REPEATED_ATTEMPTS = 0x09
    INVALID_PARAMETERS = 0x0A
    DHKEY_CHECK_FAILED = 0x0B
    NUMERIC_COMPARISON_FAILED = 0x0C
    BR_EDR_PAIRING_IN_PROGRESS = 0x0D
    CROSS_TRANSPORT_KEY_DERIVATION_NOT_ALLOWED = 0x0E


@dataclass(frozen=True)
class Meaning:
    """What one reason means between a chargepin charger and a phone."""

    means: str
    """For people: the phone's fallback message, the lab's reports."""
    refusal: Refusal | None = None
    """The refusal the charger sends this reason for, before any passkey round."""
    attempt: AttemptKind = AttemptKind.FAILED
    """How a served attempt that failed with this reason is counted."""


MEANINGS: Mapping[SmpError, Meaning] = MappingProxyType(
    {
        SmpError.PASSKEY_ENTRY_FAILED: Meaning(
            "PIN entry cancelled", attempt=AttemptKind.CANCELLED
        ),
        SmpError.AUTHENTICATION_REQUIREMENTS: Meaning(
            "refused: the charger pairs only with LE Secure Connections and PIN entry",
            refusal=Refusal.NEEDS_PASSKEY,
        ),
        SmpError.CONFIRM_VALUE_FAILED: Meaning("wrong PIN", attempt=AttemptKind.WRONG_PIN),
        # The reasons have no "busy": the charger answers 0x08 and its phones read it so.
        SmpError.UNSPECIFIED_REASON: Meaning(
            "refused: another phone is pairing (busy)", refusal=Refusal.BUSY
        ),
        SmpError.REPEATED_ATTEMPTS: Meaning(
            "refused: locked after too many wrong PINs", refusal=Refusal.LOCKED
        ),
        # Which check a wrong passkey fails first depends on the side that notices it.
        SmpError.DHKEY_CHECK_FAILED: Meaning("wrong PIN", attempt=AttemptKind.WRONG_PIN),
    }
)
"""The reasons chargepin gives a meaning; any other is an attempt that FAILED."""

REFUSAL_CODES: Mapping[Refusal, SmpError] = MappingProxyType(
    {m.refusal: code for code, m in MEANINGS.items() if m.refusal is not None}
)
"""The reason the charger answers each refused Pairing Request with."""

WRONG_PIN_CODES: frozenset[SmpError] = frozenset(
    code for code, m in MEANINGS.items() if m.attempt is AttemptKind.WRONG_PIN
)
"""The reasons a pairing fails with when the PIN typed was not the charger's."""


def attempt_kind(reason: int) -> AttemptKind:
    """How a served attempt that failed with `reason` is counted (FAILED when unknown)."""
    meaning = _meaning(reason)
    return AttemptKind.FAILED if meaning is None else meaning.attempt


def refusal_of(reason: int) -> Refusal | None:
    """The refusal a phone reads from the reason the charger failed its pairing with."""
    meaning = _meaning(reason)
    return None if meaning is None else meaning.refusal


def describe(reason: int) -> str:
    """`reason` for people and logs: "0x04 CONFIRM_VALUE_FAILED (wrong PIN)"."""
    try:
        name = SmpError(reason).name
    except ValueError:
        return f"0x{reason:02X} (unknown reason)"
    meaning = MEANINGS.get(SmpError(reason))
    return f"0x{reason:02X} {name}" + ("" if meaning is None else f" ({meaning.means})")


def _meaning(reason: int) -> Meaning | None:
    try:
        return MEANINGS.get(SmpError(reason))
    except ValueError:
        return None
