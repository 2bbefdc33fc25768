"""The connection registry: which fleet process holds which charger, and when it was last heard.

In the database, not in a process's memory, so any process can tell whether a charger is online
and which process holds it (DESIGN.md, "Scale-out"). A newer connection takes the charger's row
over; the older socket, wherever it is, finds at its next write that the row names another
connection and closes. The row names its gateway (`process`, fleet/csms/gateways.py): a charger
whose gateway stopped beating is offline whatever its own row says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargepin.fleet.access import require_owner
from chargepin.fleet.csms import gateways
from chargepin.fleet.models import CsmsConnection, CsmsGateway, User

IN_BATCH = 500
"""Charger ids per `IN (...)` list: well below every database's parameter limit."""

GRACE_INTERVALS = 2
"""Heartbeat intervals a charger may stay silent before it counts as offline."""
GRACE_MARGIN = dt.timedelta(seconds=30)


def offline_after(heartbeat_interval: int) -> dt.timedelta:
    """How long after it was last heard a charger counts as offline."""
    return GRACE_INTERVALS * dt.timedelta(seconds=heartbeat_interval) + GRACE_MARGIN


def take(db: Session, charger_id: int, connection_id: str, process: str, now: dt.datetime) -> None:
    """Record that `connection_id` in `process` now holds the charger (the newest wins)."""
    row = db.get(CsmsConnection, charger_id, with_for_update=True)
    if row is None:
        try:
            with db.begin_nested():
                db.add(
                    CsmsConnection(
                        charger_id=charger_id,
                        connection_id=connection_id,
                        process=process,
                        connected_at=now,
                        last_seen=now,
                    )
                )
            return
        except IntegrityError:
            # The charger's first two connections at once: the other inserted first; take its
            # row over like any newer connection does.
            row = db.get(CsmsConnection, charger_id, with_for_update=True, populate_existing=True)
            assert row is not None
    row.connection_id, row.process = connection_id, process
    row.connected_at = row.last_seen = now
    row.booted_at = row.closed_at = None


def touch(
    db: Session, charger_id: int, connection_id: str, now: dt.datetime, **facts: object
) -> bool:
    """Mark the charger heard now (and any of `facts`: booted_at, connector_status); False when
    another connection holds it (this one was superseded and should close)."""
    result = db.execute(
        update(CsmsConnection)
        .where(
            CsmsConnection.charger_id == charger_id,
            CsmsConnection.connection_id == connection_id,
        )
        .values(last_seen=now, **facts)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(db: Session, charger_id: int, connection_id: str, now: dt.datetime) -> None:
    """The socket closed: the charger is offline unless a newer connection holds it."""
    db.execute(
        update(CsmsConnection)
        .where(
            CsmsConnection.charger_id == charger_id,
            CsmsConnection.connection_id == connection_id,
        )
        .values(closed_at=now)
    )


def holder(db: Session, charger_id: int) -> CsmsConnection | None:
    return db.scalar(select(CsmsConnection).where(CsmsConnection.charger_id == charger_id))


class Seen(Protocol):
    """What `is_online` reads of a registry row: the ORM row or a Core row of these columns."""

    @property
    def last_seen(self) -> dt.datetime: ...
    @property
    def closed_at(self) -> dt.datetime | None: ...


def is_online(
    row: Seen | None, now: dt.datetime, heartbeat_interval: int, gateway_alive: bool
) -> bool:
    """Connected, its gateway alive, and heard within the grace period."""
    if row is None or row.closed_at is not None or not gateway_alive:
        return False
    last = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=dt.UTC)
    return now - last <= offline_after(heartbeat_interval)


@dataclass(frozen=True)
class ConnectionView:
    """What the owner sees of the charger's OCPP link."""

    online: bool
    connected_at: dt.datetime | None
    last_seen: dt.datetime | None
    booted_at: dt.datetime | None
    connector_status: str | None


def connection_of(
    db: Session, owner: User, serial: str, now: dt.datetime, heartbeat_interval: int
) -> ConnectionView:
    """Whether the charger is connected to the fleet's CSMS, and when it was last heard (owner
    only: the JSON API's `/connection`)."""
    charger = require_owner(db, owner, serial, "see the charger's connection")
    row = holder(db, charger.id)
    alive = row is not None and gateways.alive(db, row.process, gateways.wall_now())
    return view_of(row, now, heartbeat_interval, alive)


def online_of(
    db: Session, charger_ids: Sequence[int], now: dt.datetime, heartbeat_interval: int
) -> set[int]:
    """Which of the chargers are online (`is_online`, their gateway's heartbeat read in the same
    query), in one query per `IN_BATCH` (the web app's My chargers); the caller has checked
    that they are the owner's."""
    online: set[int] = set()
    wall = gateways.wall_now()
    for start in range(0, len(charger_ids), IN_BATCH):
        batch = charger_ids[start : start + IN_BATCH]
        query = (
            select(
                CsmsConnection.charger_id,
                CsmsConnection.last_seen,
                CsmsConnection.closed_at,
                CsmsGateway.last_seen.label("gateway_seen"),
            )
            .outerjoin(CsmsGateway, CsmsGateway.id == CsmsConnection.process)
            .where(CsmsConnection.charger_id.in_(batch))
        )
        online.update(
            row.charger_id
            for row in db.execute(query)
            if is_online(
                cast(Seen, row), now, heartbeat_interval, gateways.fresh(row.gateway_seen, wall)
            )
        )
    return online


def view_of(
    row: CsmsConnection | None, now: dt.datetime, heartbeat_interval: int, gateway_alive: bool
) -> ConnectionView:
    """What the owner sees of a charger's registry row (None: it never connected)."""
    if row is None:
        return ConnectionView(False, None, None, None, None)
    return ConnectionView(
        online=is_online(row, now, heartbeat_interval, gateway_alive),
        connected_at=row.connected_at,
        last_seen=row.last_seen,
        booted_at=row.booted_at,
        connector_status=row.connector_status,
    )
