"""OCPP gateways in the database: each process serving chargers' sockets, and its heartbeat.

Every process that serves `/ocpp/{serial}` (`fleet serve`, `fleet gateway`) has a row in
`csms_gateways` whose `last_seen` it writes every BEAT seconds; a charger's connection row names
its gateway (`csms_connections.process`). A gateway silent for GRACE seconds (killed, frozen,
cut off from PostgreSQL) has all its chargers shown offline at once, without waiting for each
charger's own heartbeat grace (minutes). A gateway that stops cleanly deletes its row: its
chargers are offline at that moment.

The heartbeats are on the wall clock of each gateway's host (not the fleet's clock, which tests
replace): hosts keep their clocks in step (NTP), well within GRACE.

Commands for a charger reach its gateway by PostgreSQL NOTIFY on one channel, CHANNEL, with the
charger's id as payload (sent by `outbox.enqueue` in the queuing transaction: delivered at
commit, never for a rolled back command). Every gateway LISTENs and wakes the delivery of the
session it holds for that charger, if any; the others ignore it. One channel rather than one per
gateway: the queuing process need not know which gateway holds the charger (a lookup that can
be stale by the time it commits, when the charger is moving to another gateway), and commands
are owner actions, rare next to the chargers' own traffic: every gateway reading every
notification costs little. A missed notification (the LISTEN connection dropped) is made good
by the sweep: every SWEEP seconds, and at once after LISTEN is re-established, a gateway wakes
its sessions whose charger has a waiting command.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargepin.fleet.models import CsmsCommand, CsmsConnection, CsmsGateway

BEAT = 2.0
"""Seconds between a gateway's heartbeats."""
GRACE = dt.timedelta(seconds=8)
"""A gateway not heard for this long is dead: its chargers are offline."""
SWEEP = 4.0
"""Seconds between a gateway's sweeps for waiting commands of the chargers it holds (the
recovery of a missed NOTIFY; on SQLite, of a command queued by another process)."""
FORGET = dt.timedelta(hours=1)
"""A dead gateway's row is deleted after this long (its connection rows stay, offline)."""
CHANNEL = "chargepin_outbox"
"""The PostgreSQL NOTIFY channel of queued commands; the payload is the charger's id."""


def wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def beat(db: Session, gateway: str, now: dt.datetime) -> None:
    """Record that `gateway` is alive now (registering it on its first beat, or again after its
    row was forgotten while it was frozen), and forget gateways long dead."""
    written = db.execute(update(CsmsGateway).where(CsmsGateway.id == gateway).values(last_seen=now))
    if not written.rowcount:  # type: ignore[attr-defined]
        try:
            with db.begin_nested():
                db.add(CsmsGateway(id=gateway, started_at=now, last_seen=now))
        except IntegrityError:
            pass  # its first two beats at once (start and the beat task): the other inserted
    db.execute(delete(CsmsGateway).where(CsmsGateway.last_seen < now - FORGET))


def staged(db: Session, gateway: str) -> None:
    """A gateway for a staged scene (the lab's screenshots and benches), which no process beats
    for: heard a day ahead on the wall clock, so its chargers stay online for the scene."""
    now = wall_now()
    db.add(CsmsGateway(id=gateway, started_at=now, last_seen=now + dt.timedelta(days=1)))


def retire(db: Session, gateway: str) -> None:
    """The gateway stops: its chargers are offline from now on (they reconnect elsewhere)."""
    db.execute(delete(CsmsGateway).where(CsmsGateway.id == gateway))


def alive(db: Session, gateway: str, now: dt.datetime) -> bool:
    """Whether `gateway` beat within GRACE of `now`."""
    return fresh(db.scalar(select(CsmsGateway.last_seen).where(CsmsGateway.id == gateway)), now)


def fresh(last_seen: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a gateway last heard at `last_seen` (None: no such gateway) is alive at `now`."""
    if last_seen is None:
        return False
    last = last_seen if last_seen.tzinfo else last_seen.replace(tzinfo=dt.UTC)
    return now - last <= GRACE


def waiting(db: Session, gateway: str) -> list[int]:
    """The chargers held by `gateway` with a command waiting (the sweep)."""
    rows = db.scalars(
        select(CsmsCommand.charger_id)
        .join(CsmsConnection, CsmsConnection.charger_id == CsmsCommand.charger_id)
        .where(
            CsmsConnection.process == gateway,
            CsmsConnection.closed_at.is_(None),
            CsmsCommand.state == "waiting",
        )
        .distinct()
    )
    return list(rows)


def notify(db: Session, charger_id: int) -> None:
    """Wake the gateway holding the charger when this transaction commits (PostgreSQL; on
    SQLite the one process wakes its own socket, route.Hub.wake)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {
                "channel": CHANNEL,
                "payload": str(charger_id),
            },
        )
