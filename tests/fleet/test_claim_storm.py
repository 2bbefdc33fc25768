"""Issue 9, point 3, over real HTTP: a storm of bad claims must not freeze the API.

The fleet app is served by uvicorn on 127.0.0.1 (in this process, on a socket bound before it
starts, so nothing polls for it). Before the fix, 20 parallel claims of made-up serials from
one account made another user's `GET /chargers/{serial}` wait 29.6 s, and 8-15 of the claims
got 500 "QueuePool limit ... timed out" (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from chargepin.clock import FakeClock
from chargepin.core.provisioning import StickerPayload
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_accounts import made_at_once
from tests.helpers.fleet_settings import start_fleet

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
APP = {"X-App-Version": "2.3.0"}
BAD_CLAIMS = 50
ATTACKERS = 25
"""Free accounts: each one not yet locked made the old code open a second connection."""
STUCK = 10.0
"""Seconds no read of another user may take: the bug made it wait for SQLAlchemy's 30 s pool
timeout (29.6 s measured). The issue's acceptance number, p99 under 1 s, is a speed target:
`chargepin lab attack fleet-http` measures and reports it (docs/SECURITY.md), side by side with
the same read alone; a timed bound here would fail on a loaded machine, not on the bug."""


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[str, LocalFleet]]:
    """The fleet app behind uvicorn on a loopback socket; its base URL and the fleet."""
    fleet = start_fleet(db_url, FakeClock())
    try:
        with serve(fleet.app) as url:
            yield url, fleet
    finally:
        fleet.dispose()


async def account(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    await http.post("/register", json={"email": email, "password": PASSWORD})
    response = await http.post("/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}", **APP}


async def timed_get(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def storm(base: str, fleet: LocalFleet) -> tuple[list[float], list[float], list[int]]:
    (made,) = fleet.provision("Pulsar Max", "6.11.2")
    limits = httpx.Limits(max_connections=BAD_CLAIMS + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        owner = await account(http, "owner@example.com")
        claimed = await http.post(
            "/chargers/claim", json={"payload": made.sticker.encode()}, headers=owner
        )
        assert claimed.status_code == 201, claimed.text
        # Signing in is not the subject: the attackers' accounts and sessions are made in the
        # database with one argon2 hash (over HTTP: 25 registrations and logins, 50 of them).
        attackers = made_at_once(
            fleet.state, [f"attacker{n}@example.com" for n in range(ATTACKERS)]
        )
        info = f"/chargers/{made.serial}"
        alone = [await timed_get(http, info, owner) for _ in range(20)]

        async def bad_claim(n: int) -> int:
            sticker = StickerPayload(f"CP{90000000 + n:08d}", "0000000000ZZ")
            answer = await http.post(
                "/chargers/claim",
                json={"payload": sticker.encode()},
                headers=attackers[n % ATTACKERS],
            )
            return answer.status_code

        claims = asyncio.gather(*(bad_claim(n) for n in range(BAD_CLAIMS)))
        under: list[float] = []
        while not claims.done() or len(under) < 20:
            under.append(await timed_get(http, info, owner))
        return alone, under, list(await claims)


def test_fifty_parallel_bad_claims_leave_other_users_unaffected(
    served: tuple[str, LocalFleet],
) -> None:
    base, fleet = served
    alone, under, statuses = asyncio.run(storm(base, fleet))

    assert sorted(set(statuses)) == [403, 429], statuses  # no 500
    assert statuses.count(403) == 10  # then the attackers' network is locked: all counted
    report = (
        f"GET /chargers/{{serial}}: alone p99 {p99(alone) * 1000:.0f} ms, under {BAD_CLAIMS} bad "
        f"claims p99 {p99(under) * 1000:.0f} ms (max {max(under) * 1000:.0f} ms, n={len(under)})"
    )
    print(report)
    assert max(under) < STUCK, report
