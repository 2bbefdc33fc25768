"""My chargers: each charger of a member with what its owner may know of it right now.

The app's first screen (PRODUCT.md: "a list of my chargers with their state"). It only puts
together what other modules decide: Charger Info without the PIN (`chargers.describe`), the OCPP
connection (`csms.registry.connection_of`) and a reported lockout (`csms.events.locked_until`).
Those two are the owner's (`access.require_owner`); an invited user sees them as unknown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from chargepin.fleet.chargers import ChargerView, describe, memberships_of
from chargepin.fleet.csms.events import locked_until
from chargepin.fleet.csms.registry import connection_of
from chargepin.fleet.errors import Forbidden
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
    """The chargers `user` is a live member of, by serial, with their state."""
    states = []
    for charger, role in memberships_of(db, user):
        try:
            online: bool | None = connection_of(
                db, user, charger.serial, now, heartbeat_interval
            ).online
            locked = locked_until(db, user, charger.serial, now)
        except Forbidden:  # not the owner: the connection and the events are the owner's
            online, locked = None, None
        states.append(ChargerState(describe(charger, role), online, locked))
    return states
