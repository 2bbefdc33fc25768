"""Who may use a link, and which link goes when the charger is full: the link rules.

The daemon holds at most `max_links` connections. Two rules decide what a connected phone gets:
`protected_access` (the status, control and admin characteristics need an encrypted link, with
the PIN on a passkey bond, and no lock that keeps everybody out) and `room` (with every slot
taken, the oldest idle stranger goes, so a bonded phone can always connect: four idle centrals
holding every slot once shut out even the owner, found by `chargepin lab attack parallel`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from chargepin.core import lockout
from chargepin.core.lockout import LockoutState
from chargepin.core.profiles import SecurityProfile

UNSECURED_LINK_TIMEOUT = 30.0
"""Seconds a link may stay unencrypted outside a pairing (reading the open info takes
milliseconds; a pairing has its own SMP timer): idle strangers must not hold the link slots."""

EVICTION_GRACE = 5.0
"""Seconds a new link is safe from eviction: enough for a phone to encrypt with its bond, or to
fetch an admission ticket from the fleet and start pairing."""


class AccessRefusal(enum.Enum):
    """Why a protected feature is refused on a link (the daemon answers with an ATT error)."""

    LOCKED = "locked"  # a lock with scope `all`: the link is dropped too
    NOT_ENCRYPTED = "not_encrypted"
    NOT_PASSKEY_BONDED = "not_passkey_bonded"  # the PIN is on: Just Works bonds do not count


def protected_access(
    profile: SecurityProfile,
    state: LockoutState,
    now: float,
    *,
    admitted: bool,
    encrypted: bool,
    pin_enabled: bool,
    passkey_bond: bool,
) -> AccessRefusal | None:
    """Whether a link may use protected features now; None when it may.

    A lock with scope `all` (classic) refuses even bonded phones, except on a link a member's
    ticket admitted. `passkey_bond`: the link's bond was made with the PIN (MITM): Bumble counts
    any encryption as authenticated (notes/bumble.md), so the daemon checks the stored key.
    """
    if (
        not admitted
        and not lockout.check_connection(profile.lockout, state, now, bonded=True).allowed
    ):
        return AccessRefusal.LOCKED
    if not encrypted:
        return AccessRefusal.NOT_ENCRYPTED
    if pin_enabled and not passkey_bond:
        return AccessRefusal.NOT_PASSKEY_BONDED
    return None


def idle_stranger(*, encrypted: bool, pairing: bool) -> bool:
    """Unencrypted and not pairing: a link that holds a slot and proves nothing."""
    return not encrypted and not pairing


@dataclass(frozen=True)
class Slot:
    """One connected link, as the room rule sees it."""

    handle: int
    connected_at: float  # a monotonic clock's reading
    idle_stranger: bool


@dataclass(frozen=True)
class Evict:
    """Drop this link now."""

    handle: int


@dataclass(frozen=True)
class EvictLater:
    """Every idle stranger is still in its grace: decide again at `at`."""

    at: float


def room(
    slots: Iterable[Slot], max_links: int, now: float, grace: float = EVICTION_GRACE
) -> Evict | EvictLater | None:
    """Free a slot when every one is taken, or None when nothing must (or may) go.

    Only idle strangers go, the oldest first, and none younger than `grace`: if all are younger,
    the oldest goes when it comes of age. Paired links and pairings in progress never go.
    """
    taken = list(slots)
    if len(taken) < max_links:
        return None
    idle = [slot for slot in taken if slot.idle_stranger]
    if not idle:
        return None  # every slot is a paired phone or a pairing: the charger is really full
    oldest = min(idle, key=lambda slot: slot.connected_at)
    if oldest.connected_at + grace > now:
        return EvictLater(oldest.connected_at + grace)
    return Evict(oldest.handle)
