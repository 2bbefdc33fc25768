"""Per-source limits (fleet/source_limits.py): the request rate per client address, shared by
every process on PostgreSQL (two apps on one database stand for two workers here), in the one
process on SQLite; 429 with Retry-After as JSON, as the pages' error page, and at an OCPP
handshake; the trusted proxy header; sockets at once. The clock is the fleet's FakeClock, so a
window ends when the test says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
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

RATE = 5
WINDOW = 60.0
PROXY = SourceLimitSettings(rate=RATE, window=WINDOW, header="X-Forwarded-For")


def fleet(db_url: str, clock: FakeClock, limits: SourceLimitSettings) -> FastAPI:
    settings = fleet_settings(db_url=db_url, source_limits=limits)
    return create_app(settings, vault=Vault.generate(), clock=clock)


@pytest.fixture
def two_workers(db_url: str, fleet_clock: FakeClock) -> Iterator[tuple[TestClient, TestClient]]:
    first, second = fleet(db_url, fleet_clock, PROXY), fleet(db_url, fleet_clock, PROXY)
    with TestClient(first) as a, TestClient(second) as b:
        yield a, b
    for app in (first, second):
        app.state.fleet.engine.dispose()


def via_proxy(address: str) -> dict[str, str]:
    """What the proxy in front adds: the client's address last."""
    return {"X-Forwarded-For": f"203.0.113.250, {address}"}


def test_a_source_past_the_rate_gets_429_with_retry_after_until_its_window_ends(
    two_workers: tuple[TestClient, TestClient], db_url: str, fleet_clock: FakeClock
) -> None:
    a, b = two_workers
    fleet_clock.advance(-(fleet_clock.now() % WINDOW))  # at a window's start
    shared = db_url.startswith("postgresql")
    # On PostgreSQL the requests of one source count together whichever worker serves them.
    answers = [(a if i % 2 else b).get("/me", headers=via_proxy("198.51.100.7")) for i in range(8)]
    statuses = [r.status_code for r in answers]
    if shared:
        assert statuses == [401] * RATE + [429] * 3
    else:  # SQLite serves one process: each app counts its own (and was told so: docs)
        assert statuses == [401] * 8
        statuses = [a.get("/me", headers=via_proxy("198.51.100.7")).status_code for _ in range(3)]
        assert statuses == [401, 429, 429]  # 4 and then 2 more of a's own: past 5
    refused = a.get("/me", headers=via_proxy("198.51.100.7"))
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_requests"
    assert f"more than {RATE} requests" in refused.json()["detail"]
    assert refused.headers["Retry-After"] == str(int(WINDOW))
    # Its neighbours are not punished; one IPv6 client is its /64.
    assert a.get("/me", headers=via_proxy("198.51.100.8")).status_code == 401
    for host in range(RATE):
        a.get("/me", headers=via_proxy(f"2001:db8:1:2::{host + 1}"))
    assert a.get("/me", headers=via_proxy("2001:db8:1:2::99")).status_code == 429
    assert a.get("/me", headers=via_proxy("2001:db8:1:3::1")).status_code == 401
    # The pages answer with their own error page (and their security headers).
    page = a.get("/app/signin", headers=via_proxy("198.51.100.7"))
    assert page.status_code == 429 and "text/html" in page.headers["content-type"]
    assert "Too many requests" in page.text and page.headers["Retry-After"]
    assert page.headers["X-Frame-Options"] == "DENY"
    # 10 s later the wait is 10 s shorter; once the window ends the source is served again.
    fleet_clock.advance(10)
    assert a.get("/me", headers=via_proxy("198.51.100.7")).headers["Retry-After"] == "50"
    fleet_clock.advance(50)
    assert a.get("/me", headers=via_proxy("198.51.100.7")).status_code == 401
    assert b.get("/me", headers=via_proxy("198.51.100.7")).status_code == 401


def test_the_trusted_header_must_carry_an_address_and_loopback_is_not_limited(
    two_workers: tuple[TestClient, TestClient],
) -> None:
    a, _ = two_workers
    bad = a.get("/me", headers={"X-Forwarded-For": "198.51.100.7, not-an-address"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_source"
    assert "X-Forwarded-For header does not end with a client address" in bad.json()["detail"]
    # The host's own tools (and a proxy that does not say who its client is) are exempt.
    for _ in range(RATE * 3):
        assert a.get("/me", headers=via_proxy("127.0.0.1")).status_code == 401
        assert a.get("/me").status_code == 401


@pytest.mark.parametrize("bad", [{"rate": -1}, {"window": 0.5}, {"header": "X Forwarded"}])
def test_settings_that_are_not_limits_are_refused_with_their_name(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(bad)))):
        SourceLimitSettings(**bad)  # type: ignore[arg-type]


async def test_a_source_s_sockets_at_once_and_its_handshakes_past_the_rate_are_refused(
    db_url: str, fleet_clock: FakeClock
) -> None:
    limits = SourceLimitSettings(rate=4, window=WINDOW, sockets=1, exempt=())
    app = fleet(db_url, fleet_clock, limits)
    fleet_clock.advance(-(fleet_clock.now() % WINDOW))
    with TestClient(app) as client, serve(app) as live:
        owner = login(client, "owner@example.com")  # in-process: not a network source
        first, second = add_charger(client, owner), add_charger(client, owner)

        async def handshake(serial: str, secret: bytes) -> tuple[int, str]:
            try:
                async with connect(
                    ws_url(live, serial),
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    additional_headers=basic(serial, csms_password(secret, serial)),
                    open_timeout=10,
                ):
                    return 101, ""
            except InvalidStatus as refused:
                response = refused.response
                return response.status_code, response.headers.get("Retry-After", "")

        async with connect(
            ws_url(live, first.serial),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=basic(first.serial, csms_password(first.secret, first.serial)),
        ):
            # 127.0.0.1 holds its one socket: another charger from it is refused at once.
            assert await handshake(second.serial, second.secret) == (429, "1")

        async def once_closed() -> tuple[int, str]:
            """The next handshake once the server saw the previous socket close (bounded)."""
            deadline = time.monotonic() + 10
            while (answer := await handshake(second.serial, second.secret)) == (429, "1"):
                assert time.monotonic() < deadline, "the closed socket stayed counted"
                await asyncio.sleep(0.01)
            return answer

        # Refusals for sockets at once are not counted in the rate (4 in the window):
        assert await once_closed() == (101, "")  # the 2nd request counted
        assert await once_closed() == (101, "")
        assert await once_closed() == (101, "")
        # The fifth counted handshake in the window is refused until the window's end.
        assert await once_closed() == (429, str(int(WINDOW)))
        # No header is trusted here: a client naming itself loopback is still itself.
        spoofed = httpx.get(f"{live}/me", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10)
        assert spoofed.status_code == 429
    app.state.fleet.engine.dispose()
