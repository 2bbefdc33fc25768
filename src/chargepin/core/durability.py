"""How durable each write on the pairing path is when its call returns (issue 13).

SQLite in WAL mode commits every transaction atomically and in order whatever the sync level;
the level only says when the commit reaches the disk. SYNCED (`synchronous=FULL`) fsyncs the
write-ahead log before the commit returns. ORDERED (`synchronous=NORMAL`) appends to the log
without an fsync: a power cut may take the last ORDERED commits back, never part of one, never
one without those before it, and the next SYNCED commit (or checkpoint) fsyncs them together
with its own. So a lost success costs a re-pairing, and the failure counter and the lockout,
written SYNCED before the Pairing Failed PDU leaves, can never be a free attempt. The table of
every write, and what a power cut right after it may lose: docs/SECURITY.md, "Durability of the
pairing path".
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class Durability(Enum):
    """When a committed write is on disk; the value is the SQLite `synchronous` level."""

    SYNCED = "FULL"
    """fsynced before the commit returns: survives a power cut at any later instant."""
    ORDERED = "NORMAL"
    """Atomic and in order, fsynced by the next SYNCED commit: a power cut may lose it."""


FAILED_ATTEMPT: Final = Durability.SYNCED
"""A counted failure: lockout state, epoch move, `pairing_failed`/`locked` events (one commit),
on disk before the Pairing Failed PDU leaves and before the next request is read."""

LOCKOUT_STATE: Final = Durability.SYNCED
"""Any write of the lockout state or the PIN state (epoch, custom PIN, generation)."""

BOND_REMOVED: Final = Durability.SYNCED
"""A bond deleted (a revoked or forgotten phone must stay forgotten)."""

BOND_STORED: Final = Durability.ORDERED
"""A new or replaced bond (charger or phone): lost in a power cut, the phone pairs again."""

PAIRING_OK: Final = Durability.ORDERED
"""The `pairing_ok` event, its counter and its CSMS report: committed before the bond, so a
bond on disk always has its event; lost together with the bond (or alone) in a power cut."""

EVENT_ANSWERED: Final = Durability.ORDERED
"""A security event's queue row deleted once the CSMS answered it: lost in a power cut, the
event is sent again with the same eventId, which a CSMS stores once (docs/OCPP.md). The event's
recording stays SYNCED, in its cause's commit."""

GATT_CACHE: Final = Durability.ORDERED
"""The phone's cached GATT database of a bonded charger (phone/gatt_cache.py), written or
deleted: lost in a power cut, the next reconnect reads the Database Hash, finds no cache (or a
stale one whose hash no longer matches) and discovers again."""
