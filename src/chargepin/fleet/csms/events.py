"""The security events chargers send over OCPP: stored once each, shown to the owner in words.

A station resends an event until the CSMS answers (core.ocpp_events: at least once, with the
same customData.eventId), so the row is unique per charger and event id and a resend is
answered without a second row. The words are made when the owner reads them, from the stored
type and techInfo, so a better wording applies to old events too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from chargepin.core.limits import MAX_EPOCH
from chargepin.core.ocpp_events import TECH_INFO_MAX, TYPE_MAX, VENDOR_ID, SecurityEventType
from chargepin.fleet.access import require_owner
from chargepin.fleet.csms.registry import IN_BATCH
from chargepin.fleet.db import keyset_page
from chargepin.fleet.models import StationSecurityEvent, User
from chargepin.fleet.times import aware

_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}(?:/P)?", re.ASCII)
MAX_EVENT_ID = 64
"""customData.eventId: `<serial>:<queue id>`, a serial of at most 32 characters."""
MAX_SHOWN_SECONDS = 10 * 365 * 24 * 3600
"""A duration past ten years is not a lockout the charger could have meant: not shown."""


@dataclass(frozen=True)
class StationEventView:
    id: int
    type: str
    meaning: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    tech_info: str | None


def event_id_of(custom_data: Any) -> str | None:
    """customData.eventId when the station named its event with our vendor id, else None.

    The ocpp package hands handlers every key in snake_case, customData's own included
    (`vendor_id`, `event_id`); the wire's camelCase is read too, for any other caller.
    """
    if not isinstance(custom_data, dict):
        return None
    vendor = custom_data.get("vendor_id", custom_data.get("vendorId"))
    if vendor != VENDOR_ID:
        return None
    value = custom_data.get("event_id", custom_data.get("eventId"))
    if isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID:
        return value
    return None


def occurred_at(timestamp: str, received: dt.datetime) -> dt.datetime:
    """The station's timestamp (RFC 3339), or when it arrived if it is not one."""
    try:
        value = dt.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return received
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True)
class IncomingEvent:
    """A SecurityEventNotification as received, ready to be stored."""

    charger_id: int
    type: str
    timestamp: str
    tech_info: str | None
    custom_data: Any
    received_at: dt.datetime

    def values(self) -> dict[str, Any]:
        """The row's columns (type and techInfo cut to their widths)."""
        return {
            "charger_id": self.charger_id,
            "event_id": event_id_of(self.custom_data),
            "type": self.type[:TYPE_MAX],
            "tech_info": None if self.tech_info is None else self.tech_info[:TECH_INFO_MAX],
            "occurred_at": occurred_at(self.timestamp, self.received_at),
            "received_at": self.received_at,
        }


_TABLE: Table = StationSecurityEvent.__table__  # type: ignore[assignment]


def _insert(dialect: str, rows: list[dict[str, Any]]) -> Insert:
    """One INSERT of every row (multi-row VALUES, one statement for the batch) that names the
    rows it inserted. A row whose charger already holds its event id (a resend, perhaps racing
    its first copy on another connection or process) is skipped by the unique constraint
    instead of failing the batch it is in."""
    key = (_TABLE.c.charger_id, _TABLE.c.event_id)
    if dialect == "sqlite":
        return sqlite_insert(_TABLE).values(rows).on_conflict_do_nothing().returning(*key)
    if dialect == "postgresql":
        return postgresql_insert(_TABLE).values(rows).on_conflict_do_nothing().returning(*key)
    return _TABLE.insert().values(rows).returning(*key)


def write(connection: Connection, events: Sequence[IncomingEvent]) -> list[bool]:
    """Insert `events` (the caller's transaction commits); per event, False when this charger
    sent this event id before (earlier, or earlier in this batch): a resend, not stored twice.

    Core, not the ORM: this runs for every event of every charger.
    """
    rows = [event.values() for event in events]
    first: dict[tuple[int, str], int] = {}
    fresh: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if row["event_id"] is not None:
            key = (row["charger_id"], row["event_id"])
            if key in first:
                continue
            first[key] = index
        fresh.append(row)
    result = connection.execute(_insert(connection.dialect.name, fresh))
    inserted = {(charger, event) for charger, event in result if event is not None}
    return [
        row["event_id"] is None or (first[key] == index and key in inserted)
        for index, row in enumerate(rows)
        for key in [(row["charger_id"], row["event_id"])]
    ]


def write_batch(engine: Engine, events: Sequence[IncomingEvent]) -> list[bool | Exception]:
    """`write` in one transaction; if an event breaks a constraint (its charger was deleted
    meanwhile), each event alone in its own, so that it fails only its own station's answer.
    Any other failure (a lock timeout, the database gone) is the whole batch's."""
    try:
        with engine.begin() as connection:
            return list(write(connection, events))
    except IntegrityError:
        if len(events) == 1:
            raise
    results: list[bool | Exception] = []
    for event in events:
        try:
            with engine.begin() as connection:
                results.extend(write(connection, [event]))
        except IntegrityError as error:
            results.append(error)
    return results


MAX_BATCH = 500
"""Events written in one transaction at most (bounds a transaction's length and parameters)."""


class EventWriter:
    """Stores the stations' events in batches (group commit): the events that arrive while one
    batch is being written are written together in the next, in one transaction and one
    thread-pool hop. Each station's answer waits for the commit of its own event, so an
    answered event is stored (core.ocpp_events: the charger deletes it once answered).

    One per process (fleet/csms/route.py `Hub`); every connection of the process shares it.
    The queue holds at most one event per connection: a connection's next message is read only
    once its handler has answered (the ocpp package's receive loop).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: list[tuple[IncomingEvent, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, event: IncomingEvent) -> bool:
        """Keep the event once; False when this charger sent this event id before (a resend).
        Raises what the database raised when it could not be stored (the station resends)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((event, future))
        writer = self._writer
        # A writer left pending by a loop that stopped (an app served again, in tests) is
        # replaced, or the events would wait for it forever.
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._drain(), name="ocpp-event-writer")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            events = [event for event, _ in batch]
            try:
                results = await run_in_threadpool(write_batch, self.engine, events)
            except Exception as error:  # not swallowed: each waiting station's handler raises it
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done() or future.get_loop().is_closed():  # its station is gone
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def listed(
    db: Session, owner: User, serial: str, limit: int, before: int | None
) -> list[StationEventView]:
    """The charger's OCPP security events below id `before`, newest first (owner only)."""
    charger = require_owner(db, owner, serial, "see the charger's security events")
    query = select(StationSecurityEvent).where(StationSecurityEvent.charger_id == charger.id)
    rows = db.scalars(keyset_page(query, StationSecurityEvent.id, before, limit))
    return [
        StationEventView(
            e.id,
            e.type,
            meaning(e.type, e.tech_info, aware(e.occurred_at)),
            aware(e.occurred_at),
            aware(e.received_at),
            e.tech_info,
        )
        for e in rows
    ]


def meaning(event_type: str, tech_info: str | None, at: dt.datetime) -> str:
    """What the event means, in words for the owner ("5 wrong PINs from AA:...: locked until
    14:05 UTC"). Only fields that parse are quoted: a station's text is never echoed raw."""
    info = _fields(tech_info)
    phone = _phone(info)
    source = f" from {phone}" if phone else ""
    match event_type:
        case SecurityEventType.LOGIN_FAILED:
            epoch = _number(info, "epoch", MAX_EPOCH)
            at_epoch = f" (PIN epoch {epoch})" if epoch is not None else ""
            count = _number(info, "count", 10**9)  # a storm of failures sent as one event
            what = f"{count} wrong PINs" if count and count > 1 else "wrong PIN"
            return f"{what}{source}{at_epoch}"
        case SecurityEventType.LOGIN_ACCEPTED:
            return f"{phone or 'a phone'} paired with the PIN"
        case SecurityEventType.PIN_LOCKOUT:
            failures = _number(info, "failures", 10**6)
            what = f"{failures} wrong PINs" if failures else "wrong PINs"
            end = lockout_end(tech_info, at)
            if end is None:
                return f"{what}{source}: pairing locked"
            return f"{what}{source}: locked until {end.strftime('%H:%M UTC')}"
        case SecurityEventType.PHONE_REMOVED:
            return f"{phone or 'a phone'} removed from the charger"
        case SecurityEventType.RECONFIGURATION:
            change = str(info.get("change"))
            words = {
                "pin_enabled": "the PIN was enabled",
                "pin_changed": "the PIN was changed",
                "pin_disabled": "the PIN was disabled",
                "pin_rekeyed": "the charger moved to a new PIN sequence (re-key)",
            }
            return words.get(change, "the charger's security settings were changed") + (
                " over Bluetooth" if info.get("origin") == "ble" else ""
            )
        case SecurityEventType.REPLAY:
            return f"a replayed owner ticket was refused{source}"
        case SecurityEventType.INVALID_MESSAGES:
            return f"a malformed message was refused{source}"
        case SecurityEventType.STARTUP:
            return "the charger started"
        case SecurityEventType.EVENTS_DROPPED:
            dropped = _number(info, "dropped", 10**9)
            return f"the charger's event queue was full: {dropped or 'some'} events were not kept"
        case SecurityEventType.RESET:
            when = {"Immediate": "at once", "OnIdle": "once idle"}.get(str(info.get("reset")))
            if info.get("origin") == "ocpp" and when is not None:
                return f"the CSMS reset the charger ({when})"
            return "the charger was reset or rebooted"
    return f"security event {event_type}"


def lockout_end(tech_info: str | None, at: dt.datetime) -> dt.datetime | None:
    """When a lockout the charger reported at `at` ends, if its techInfo says how long."""
    duration = _number(_fields(tech_info), "duration", MAX_SHOWN_SECONDS)
    return None if duration is None else at + dt.timedelta(seconds=duration)


def locked_until(db: Session, owner: User, serial: str, now: dt.datetime) -> dt.datetime | None:
    """Until when the charger's pairing is locked, from the newest lockout it reported over
    OCPP, or None (no lockout reported, or it has ended). Owner only, like the events."""
    charger = require_owner(db, owner, serial, "see the charger's security events")
    return lockouts_of(db, [charger.id], now).get(charger.id)


def lockouts_of(
    db: Session, charger_ids: Sequence[int], now: dt.datetime
) -> dict[int, dt.datetime]:
    """`locked_until` for many chargers in one query per `IN_BATCH` (the web app's My
    chargers): the chargers whose newest reported lockout still runs, and until when. The caller
    has checked that they are the owner's."""
    locked: dict[int, dt.datetime] = {}
    for start in range(0, len(charger_ids), IN_BATCH):
        batch = charger_ids[start : start + IN_BATCH]
        newest = (
            select(func.max(StationSecurityEvent.id))
            .where(
                StationSecurityEvent.charger_id.in_(batch),
                StationSecurityEvent.type == SecurityEventType.PIN_LOCKOUT,
            )
            .group_by(StationSecurityEvent.charger_id)
        )
        rows = db.execute(
            select(
                StationSecurityEvent.charger_id,
                StationSecurityEvent.tech_info,
                StationSecurityEvent.occurred_at,
            ).where(StationSecurityEvent.id.in_(newest.scalar_subquery()))
        )
        for charger_id, tech_info, occurred in rows:
            end = lockout_end(tech_info, aware(occurred))
            if end is not None and end > now:
                locked[charger_id] = end
    return locked


def _fields(tech_info: str | None) -> dict[str, Any]:
    """techInfo's fields when it is a JSON object (ours is), else none."""
    if not tech_info:
        return {}
    try:
        value = json.loads(tech_info)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _phone(info: dict[str, Any]) -> str | None:
    value = info.get("phone")
    return value.upper() if isinstance(value, str) and _ADDRESS.fullmatch(value) else None


def _number(info: dict[str, Any], key: str, maximum: int) -> int | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= maximum:
        return None
    return int(value)
