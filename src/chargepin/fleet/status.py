"""The figures an operator watches, read from the fleet's database (`chargepin fleet status`).

Everything here is in the database every process shares, so one command on any host sees the
whole fleet: the gateways' heartbeats and the chargers each holds, the outbox (how long the
oldest waiting command has waited), the security events stored per minute, the per-source
request counters of the current window, and, on PostgreSQL, the server's connections (a pool
that runs dry shows as connections near `max_connections` and sessions waiting on locks).
What no table holds (503 answers, a request's wait for a pooled connection) is in the proxy's
and the service's logs: docs/DEPLOY.md, "What to watch".
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from chargepin.fleet.csms.gateways import fresh
from chargepin.fleet.models import (
    Charger,
    CsmsCommand,
    CsmsConnection,
    CsmsGateway,
    SourceHit,
    StationSecurityEvent,
)


@dataclass(frozen=True)
class GatewayStatus:
    id: str
    started_at: str
    heartbeat_age_s: float
    """Seconds since its last heartbeat (every 2 s; dead past 8 s)."""
    alive: bool
    chargers: int
    """Open OCPP connections its rows name."""


@dataclass(frozen=True)
class DatabaseStatus:
    """PostgreSQL's own view of this database's sessions (pg_stat_activity)."""

    connections: int
    max_connections: int
    active: int
    idle_in_transaction: int
    waiting_on_locks: int
    longest_transaction_s: float | None


@dataclass(frozen=True)
class FleetStatus:
    at: str
    dialect: str
    chargers_provisioned: int
    gateways: list[GatewayStatus]
    chargers_connected: int
    """Open connections held by live gateways."""
    chargers_on_dead_gateways: int
    """Open connections whose gateway is dead or gone: chargers that have yet to reconnect."""
    commands: dict[str, int]
    """Outbox commands by state (waiting, sent, applied, failed)."""
    oldest_waiting_s: float | None
    """Age of the oldest waiting command: it should stay small while its charger is online."""
    events_last_minute: int
    events_last_hour: int
    source_window_s: float
    source_rate: int
    sources_counted: int
    """Sources with a counter in the current window (PostgreSQL; SQLite counts in its process)."""
    sources_over_rate: int
    """Of them, those past the rate: refused until the window ends."""
    busiest_source_hits: int
    database: DatabaseStatus | None
    """None on SQLite."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _seconds(delta: dt.timedelta) -> float:
    return round(delta.total_seconds(), 1)


def read(db: Session, now: dt.datetime, source_rate: int, source_window: float) -> FleetStatus:
    """The figures at `now` (the wall clock: gateways beat on it). `source_rate` and
    `source_window` are the services' `--source-rate` and `--source-window`."""
    dialect = db.get_bind().dialect.name
    open_by_gateway = dict(
        db.execute(
            select(CsmsConnection.process, func.count())
            .where(CsmsConnection.closed_at.is_(None))
            .group_by(CsmsConnection.process)
        ).all()
    )
    gateways = []
    for row in db.execute(select(CsmsGateway).order_by(CsmsGateway.started_at)).scalars():
        gateways.append(
            GatewayStatus(
                id=row.id,
                started_at=_aware(row.started_at).isoformat(),
                heartbeat_age_s=_seconds(now - _aware(row.last_seen)),
                alive=fresh(row.last_seen, now),
                chargers=int(open_by_gateway.get(row.id, 0)),
            )
        )
    live = {g.id for g in gateways if g.alive}
    connected = sum(int(n) for process, n in open_by_gateway.items() if process in live)
    commands = {
        state: int(n)
        for state, n in db.execute(
            select(CsmsCommand.state, func.count()).group_by(CsmsCommand.state)
        ).all()
    }
    oldest = db.scalar(
        select(func.min(CsmsCommand.created_at)).where(CsmsCommand.state == "waiting")
    )
    received = StationSecurityEvent.received_at
    events = [
        int(db.scalar(select(func.count()).where(received > now - span)) or 0)
        for span in (dt.timedelta(minutes=1), dt.timedelta(hours=1))
    ]
    bucket = math.floor(now.timestamp() / source_window)
    counted, over, busiest = db.execute(
        select(
            func.count(),
            func.count().filter(SourceHit.hits > source_rate),
            func.coalesce(func.max(SourceHit.hits), 0),
        ).where(SourceHit.bucket == bucket)
    ).one()
    return FleetStatus(
        at=now.isoformat(),
        dialect=dialect,
        chargers_provisioned=int(db.scalar(select(func.count()).select_from(Charger)) or 0),
        gateways=gateways,
        chargers_connected=connected,
        chargers_on_dead_gateways=sum(int(n) for n in open_by_gateway.values()) - connected,
        commands={
            state: commands.get(state, 0) for state in ("waiting", "sent", "applied", "failed")
        },
        oldest_waiting_s=None if oldest is None else _seconds(now - _aware(oldest)),
        events_last_minute=events[0],
        events_last_hour=events[1],
        source_window_s=source_window,
        source_rate=source_rate,
        sources_counted=int(counted),
        sources_over_rate=int(over),
        busiest_source_hits=int(busiest),
        database=_database(db) if dialect == "postgresql" else None,
    )


def _database(db: Session) -> DatabaseStatus:
    row = db.execute(
        text(
            "SELECT count(*),"
            " count(*) FILTER (WHERE state = 'active'),"
            " count(*) FILTER (WHERE state LIKE 'idle in transaction%'),"
            " count(*) FILTER (WHERE wait_event_type = 'Lock'),"
            " extract(epoch FROM max(now() - xact_start))"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    ).one()
    maximum = int(db.scalar(text("SELECT current_setting('max_connections')::int")) or 0)
    longest = None if row[4] is None else round(float(row[4]), 1)
    return DatabaseStatus(
        connections=int(row[0]),
        max_connections=maximum,
        active=int(row[1]),
        idle_in_transaction=int(row[2]),
        waiting_on_locks=int(row[3]),
        longest_transaction_s=longest,
    )


def lines(status: FleetStatus) -> list[str]:
    """The figures for a person, one per line."""
    out = [f"fleet status at {status.at} ({status.dialect})"]
    out.append(f"chargers provisioned: {status.chargers_provisioned}")
    alive = sum(g.alive for g in status.gateways)
    out.append(f"gateways: {alive} alive, {len(status.gateways) - alive} dead")
    for g in status.gateways:
        state = "alive" if g.alive else "DEAD"
        out.append(
            f"  {g.id}: {state}, heartbeat {g.heartbeat_age_s:g} s ago, {g.chargers} chargers"
        )
    out.append(
        f"chargers connected: {status.chargers_connected} "
        f"({status.chargers_on_dead_gateways} on dead gateways, yet to reconnect)"
    )
    counts = ", ".join(f"{n} {state}" for state, n in status.commands.items())
    oldest = "none" if status.oldest_waiting_s is None else f"{status.oldest_waiting_s:g} s"
    out.append(f"commands: {counts}; oldest waiting: {oldest}")
    out.append(
        f"security events stored: {status.events_last_minute} in the last minute, "
        f"{status.events_last_hour} in the last hour"
    )
    out.append(
        f"sources this {status.source_window_s:g} s window: {status.sources_counted} counted, "
        f"{status.sources_over_rate} over the rate of {status.source_rate} (refused), busiest "
        f"{status.busiest_source_hits} requests"
    )
    if status.database is not None:
        d = status.database
        longest = "none" if d.longest_transaction_s is None else f"{d.longest_transaction_s:g} s"
        out.append(
            f"database connections: {d.connections} of max_connections {d.max_connections}; "
            f"{d.active} active, {d.idle_in_transaction} idle in a transaction, "
            f"{d.waiting_on_locks} waiting on locks; longest transaction {longest}"
        )
    return out
