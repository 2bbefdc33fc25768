"""What the charger's security log records: one name per kind of event.

The values are stored in the charger's state file (events and counters) and shown by
`chargepin charger info`, so they never change; a StrEnum compares equal to its value.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """A kind of entry in the charger's security log."""

    PAIRING_FAILED = "pairing_failed"
    """A served attempt ended without a bond (wrong PIN, cancelled, aborted) or was busy."""
    PAIRING_OK = "pairing_ok"
    LOCKED = "locked"
    """A lockout started; the detail is its length."""
    TICKET_REJECTED = "ticket_rejected"
    PIN_ENABLED = "pin_enabled"
    PIN_CHANGED = "pin_changed"
    PIN_DISABLED = "pin_disabled"
    BOND_REMOVED = "bond_removed"
    PAIRING_REFUSED = "pairing_refused"
    """Refused before any passkey round and not counted (locked, or Just Works while PIN on)."""
    PAIRING_ADMITTED = "pairing_admitted"
    """A member's admit_pairing ticket let this link pair past a lockout."""
    LINK_DROPPED = "link_dropped"
    """An idle unencrypted link was dropped to keep a slot free."""
    PIN_REKEYED = "pin_rekeyed"
    """The owner moved the charger to the next PIN generation; the detail is the generation."""


class PhoneReport(StrEnum):
    """What a member's phone tells the fleet about a charger it met (`POST .../events`).

    Facts the phone read, not state the fleet believes: the owner sees them in the charger's
    security events. `phone_address` is refused (issue 9: a member named the owner's phone as
    theirs); a member's phones come from the charger's bond statements (core.bond_statement).
    """

    FIRMWARE = "firmware"
    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"
    PAIRED = "paired"
    PHONE_ADDRESS = "phone_address"
