"""My chargers: each charger of a member with what its owner may know of it right now.

The app's first screen (PRODUCT.md: "a list of my chargers with their state"). It only puts
together what other modules decide: Charger Info without the PIN (`chargers.describe`), the OCPP
connection (`csms.registry.online_of`) and a reported lockout (`csms.events.lockouts_of`),
each read for all the owner's chargers at once. Those two are the owner's (the role of the
membership, as `access.require_owner` checks it); an invited user sees them as unknown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from chargepin.fleet.access import OWNER
from chargepin.fleet.chargers import ChargerView, describe, memberships_of
from chargepin.fleet.csms.events import lockouts_of
from chargepin.fleet.csms.registry import online_of
from chargepin.fleet.models import User


@dataclass(frozen=True)
class ChargerState:
    """One line of My chargers; `online` and `locked_until` are None when not the caller's to
    see (`online`) or when nothing is locked (`locked_until`)."""

    info: ChargerView
    online: bool | None
    locked_until: dt.datetime | None


def my_chargers(
    db: Session, user: User, now: dt.datetime, heartbeat_interval: int
) -> list[ChargerState]:
    """The chargers `user` is a live member of, by serial, with their state.

    A fixed number of queries however many chargers: the memberships, then the connections and
    the lockouts of the owned ones, each in one query (`online_of`, `lockouts_of`).
    """
    listed = memberships_of(db, user)
    owned = [charger.id for charger, role in listed if role == OWNER]
    online = online_of(db, owned, now, heartbeat_interval)
    locks = lockouts_of(db, owned, now)
    states = []
    for charger, role in listed:
        # None: not the owner's, so the connection is not the caller's to see.
        link = charger.id in online if role == OWNER else None
        states.append(ChargerState(describe(charger, role), link, locks.get(charger.id)))
    return states
