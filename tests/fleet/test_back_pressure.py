"""Back-pressure: when the database is slow or its pool is taken, a request waits a bounded
time and answers 503 with Retry-After, an OCPP handshake is refused with 503, never a hang; and
the service recovers at once when the database does (real uvicorn, real databases, the pool's
connection or a table lock really held from another session)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chargepin.clock import FakeClock
from chargepin.core.csms_auth import csms_password
from chargepin.fleet.app import create_app
from chargepin.fleet.source_limits import SourceLimitSettings
from chargepin.fleet.vault import Vault
from chargepin.lab.live_server import serve
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_records import add_charger
from tests.helpers.fleet_settings import fleet_settings
from tests.helpers.ocpp_station import SUBPROTOCOL, basic, ws_url

BOUND = 0.5
"""The waits the service is configured with here (pool timeout, statement timeout)."""
NEVER_LONGER = 5.0
"""What the test accepts as 'bounded' on a loaded machine: far below the 30 s defaults."""


def fleet(db_url: str, clock: FakeClock, **settings: object) -> FastAPI:
    return create_app(
        fleet_settings(db_url=db_url, **settings),  # type: ignore[arg-type]
        vault=Vault.generate(),
        clock=clock,
    )


@pytest.fixture
def pool_of_one(db_url: str, fleet_clock: FakeClock) -> Iterator[TestClient]:
    app = fleet(
        db_url,
        fleet_clock,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout=BOUND,
        source_limits=SourceLimitSettings(header="X-Forwarded-For"),
    )
    with TestClient(app) as client:
        yield client
    app.state.fleet.engine.dispose()


async def handshake(base_url: str, serial: str, headers: dict[str, str]) -> tuple[int, str]:
    """(101, "") when the socket opens, else the refusal's status and its Retry-After."""
    try:
        async with connect(
            ws_url(base_url, serial),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=NEVER_LONGER * 2,
        ):
            return 101, ""
    except InvalidStatus as refused:
        return refused.response.status_code, refused.response.headers.get("Retry-After", "")


async def test_an_exhausted_pool_is_503_with_retry_after_within_the_bound_then_recovers(
    pool_of_one: TestClient,
) -> None:
    client = pool_of_one
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    credentials = basic(charger.serial, csms_password(charger.secret, charger.serial))
    engine = client.app.state.fleet.engine  # type: ignore[attr-defined]
    with serve(client.app) as live, httpx.Client(base_url=live, timeout=30) as http:  # type: ignore[arg-type]
        held = engine.connect()  # the pool's only connection, as a stuck request would hold it
        try:
            started = time.monotonic()
            busy = http.get("/me", headers=owner)
            waited = time.monotonic() - started
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"] == "busy" and "no free database connection" in busy.text
            assert int(busy.headers["Retry-After"]) >= 1
            assert BOUND <= waited < NEVER_LONGER
            # A counted source's request: the rate's counter (PostgreSQL's) waits as long, then
            # the same 503, never a 500 from the limiter itself.
            counted = http.get("/me", headers={**owner, "X-Forwarded-For": "198.51.100.7"})
            assert counted.status_code == 503 and counted.json()["error"] == "busy"
            assert counted.headers["Retry-After"] == "5"
            # The OCPP side: the handshake is refused with 503 (the charger retries), not hung.
            started = time.monotonic()
            assert await handshake(live, charger.serial, credentials) == (503, "5")
            assert time.monotonic() - started < NEVER_LONGER
        finally:
            held.close()
        assert http.get("/me", headers=owner).status_code == 200
        assert await handshake(live, charger.serial, credentials) == (101, "")


async def test_a_slow_postgresql_statement_is_cancelled_and_answered_503(
    db_url: str, fleet_clock: FakeClock
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("statement_timeout is PostgreSQL's; SQLite's statements run in the process")
    # The lock wait stays at its 30 s default: only the statement timeout can end it here.
    app = fleet(db_url, fleet_clock, db_statement_timeout=BOUND)
    other = sqlalchemy.create_engine(db_url)
    try:
        with TestClient(app) as client:
            owner = login(client, "owner@example.com")
            with serve(client.app) as live, httpx.Client(base_url=live, timeout=60) as http:  # type: ignore[arg-type]
                with other.connect() as session:
                    # Another session makes the tokens table wait (a slow DDL, a long vacuum).
                    session.exec_driver_sql("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")
                    started = time.monotonic()
                    slow = http.get("/me", headers=owner)
                    waited = time.monotonic() - started
                    session.rollback()
                assert slow.status_code == 503, slow.text
                assert "too slow" in slow.json()["detail"] and slow.headers["Retry-After"]
                assert BOUND <= waited < NEVER_LONGER
                assert http.get("/me", headers=owner).status_code == 200
    finally:
        other.dispose()
        app.state.fleet.engine.dispose()
