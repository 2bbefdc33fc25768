"""The CSMS's event writer (fleet/csms/events.py EventWriter): the events of many stations that
arrive together are committed together, each stored once, and one bad event fails only itself.
On the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chargepin.core.ocpp_events import custom_data
from chargepin.fleet.csms.events import EventWriter, IncomingEvent
from chargepin.fleet.models import Charger, StationSecurityEvent
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_records import add_charger

AT = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def incoming(charger_id: int, serial: str, number: int | None) -> IncomingEvent:
    """A wrong PIN with eventId `serial:number` (no customData when `number` is None)."""
    return IncomingEvent(
        charger_id,
        "MaintenanceLoginFailed",
        "2026-01-01T11:59:00.000Z",
        '{"origin":"ble","reason":"wrong_pin"}',
        None if number is None else custom_data(serial, number),
        AT,
    )


def stored_rows(client: TestClient) -> list[tuple[int, str | None]]:
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        return [
            (row.charger_id, row.event_id)
            for row in db.scalars(select(StationSecurityEvent).order_by(StationSecurityEvent.id))
        ]


def charger_ids(client: TestClient, count: int) -> list[tuple[int, str]]:
    owner = login(client, "owner@example.com")
    serials = [add_charger(client, owner).serial for _ in range(count)]
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        rows = db.execute(select(Charger.id, Charger.serial).where(Charger.serial.in_(serials)))
        return sorted((int(i), str(s)) for i, s in rows)


async def test_events_that_arrive_together_are_committed_together_each_once(
    client: TestClient,
) -> None:
    (first, first_serial), (second, second_serial) = charger_ids(client, 2)
    engine = client.app.state.fleet.engine  # type: ignore[attr-defined]
    writer = EventWriter(engine)
    assert await writer.store(incoming(first, first_serial, 1)) is True

    commits = 0

    def count_commit(*_: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", count_commit)
    try:
        results = await asyncio.gather(
            writer.store(incoming(first, first_serial, 1)),  # stored before: a resend
            *(writer.store(incoming(first, first_serial, n)) for n in range(2, 22)),
            writer.store(incoming(second, second_serial, 2)),  # same number, other charger
            writer.store(incoming(first, first_serial, 5)),  # resent within the batch
            writer.store(incoming(second, second_serial, None)),  # another vendor's event
            writer.store(incoming(second, second_serial, None)),  # ... kept as it comes
        )
    finally:
        event.remove(engine, "commit", count_commit)

    assert results == [False, *[True] * 20, True, False, True, True]
    assert commits == 1
    rows = stored_rows(client)
    assert len(rows) == 24
    assert sorted(r for r in rows if r[1] is not None) == sorted(
        [(first, f"{first_serial}:{n}") for n in range(1, 22)] + [(second, f"{second_serial}:2")]
    )


async def test_an_event_whose_charger_is_gone_fails_alone(client: TestClient) -> None:
    [(charger, serial)] = charger_ids(client, 1)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        missing = int(db.scalar(select(func.max(Charger.id)))) + 1000
    writer = EventWriter(fleet.engine)

    results = await asyncio.gather(
        writer.store(incoming(charger, serial, 1)),
        writer.store(incoming(missing, "CPX000001", 1)),
        writer.store(incoming(charger, serial, 2)),
        return_exceptions=True,
    )

    assert results[0] is True and results[2] is True
    assert isinstance(results[1], IntegrityError)
    assert stored_rows(client) == [(charger, f"{serial}:1"), (charger, f"{serial}:2")]
    # The writer goes on after a failed batch.
    assert await writer.store(incoming(charger, serial, 3)) is True


@pytest.mark.parametrize("count", [1, 3])
async def test_a_database_failure_reaches_every_waiting_station(
    client: TestClient, count: int
) -> None:
    [(charger, serial)] = charger_ids(client, 1)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    # Every statement names a schema the database does not have: not a constraint, so the
    # whole batch fails (no event-by-event retry) and each waiting station hears it.
    broken = EventWriter(fleet.engine.execution_options(schema_translate_map={None: "nowhere"}))

    results = await asyncio.gather(
        *(broken.store(incoming(charger, serial, n)) for n in range(count)),
        return_exceptions=True,
    )

    assert len(results) == count
    assert all(isinstance(r, SQLAlchemyError) for r in results)
    assert stored_rows(client) == []
    assert await EventWriter(fleet.engine).store(incoming(charger, serial, 1)) is True
