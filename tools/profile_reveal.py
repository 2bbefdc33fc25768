"""Where a PIN reveal's CPU goes on PostgreSQL: the thread-pool hop's path against the loop's.

A measurement script, not product code (docs/PERFORMANCE.md, "Issue 13: the reveal on
PostgreSQL, on the event loop"). On a fresh database of the given server, one owner claims one
charger; then the service work of a reveal is timed (CPU clock of this process, which includes
psycopg's and the event loop's work, not the PostgreSQL backend's) both ways, interleaved:
`reveal_pin` as the hop runs it (engine, pre-ping, SQLAlchemy Core, BEGIN / SELECT / INSERT /
COMMIT) and `LoopReveals.reveal` as the route runs it on the loop. Then each is profiled
(cProfile on the CPU clock) and its own time is summed by whose code it is.

    .venv/bin/python tools/profile_reveal.py postgresql+psycopg://postgres@127.0.0.1:55432
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable

import sqlalchemy
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.fleet.api.chargers import reveal_pin
from chargepin.fleet.deps import bearer_digest
from chargepin.lab.local_fleet import PASSWORD, LocalFleet

APP_VERSION = "2.3.0"


def owner_of(filename: str) -> str:
    for part, owner in (
        ("psycopg", "psycopg"),
        ("sqlalchemy", "SQLAlchemy"),
        ("/asyncio/", "asyncio"),
        ("selectors", "asyncio"),
        ("chargepin", "chargepin"),
    ):
        if part in filename:
            return owner
    if filename.startswith("~"):
        return "C built-ins (socket, select, hmac, AES)"
    return "other Python"


def shares(profile: cProfile.Profile) -> dict[str, float]:
    """Each owner's share (%) of the profiled function time."""
    spent: Counter[str] = Counter()
    for (filename, _line, _name), row in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        spent[owner_of(filename)] += row[2]
    total = sum(spent.values())
    return {owner: round(100 * t / total, 1) for owner, t in spent.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("server", help="postgresql+psycopg://user@host:port (a database is made)")
    parser.add_argument("--reveals", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    name = f"profile_reveal_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(f"{args.server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        measure(f"{args.server}/{name}", args.reveals, args.rounds)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def measure(url: str, reveals: int, rounds: int) -> None:
    fleet = LocalFleet.start(url, FakeClock())
    try:
        with TestClient(fleet.app) as client:
            (made,) = fleet.provision("Pulsar Max", "6.11.2")
            account = {"email": "owner@example.com", "password": PASSWORD}
            client.post("/register", json=account)
            token = client.post("/login", json=account).json()["token"]
            headers = {"Authorization": f"Bearer {token}", "X-App-Version": APP_VERSION}
            claimed = client.post(
                "/chargers/claim", json={"payload": made.sticker.encode()}, headers=headers
            )
            assert claimed.status_code == 201, claimed.text
            state = fleet.state
            digest = bearer_digest(headers["Authorization"])
            assert digest is not None
            loop_reveals = fleet.app.state.loop_reveals

            def hop(n: int, profile: cProfile.Profile | None = None) -> None:
                if profile is not None:
                    profile.enable()
                for _ in range(n):
                    reveal_pin(state, headers["Authorization"], made.serial, 0, APP_VERSION)
                if profile is not None:
                    profile.disable()

            async def on_loop(n: int, profile: cProfile.Profile | None) -> None:
                if profile is not None:  # cProfile sees the thread that enables it only
                    profile.enable()
                for _ in range(n):
                    answer = await loop_reveals.reveal(state, digest, made.serial, 0, APP_VERSION)
                    assert answer is not None
                if profile is not None:
                    profile.disable()

            portal = client.portal  # the client's event loop, open in this block
            assert portal is not None

            def loop(n: int, profile: cProfile.Profile | None = None) -> None:
                portal.call(on_loop, n, profile)

            paths: dict[str, Callable[[int, cProfile.Profile | None], None]] = {
                "hop": hop,
                "loop": loop,
            }
            for path in paths.values():
                path(300, None)  # warm: prepared statements, caches, connections
            cpu: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(rounds):
                for name, path in paths.items():
                    started = time.process_time()
                    path(reveals, None)
                    cpu[name].append((time.process_time() - started) / reveals * 1000)
            for name, samples in cpu.items():
                runs = ", ".join(f"{s:.3f}" for s in samples)
                print(f"{name}: {statistics.median(samples):.3f} ms CPU per reveal ({runs})")
            for name, path in paths.items():
                profile = cProfile.Profile(time.process_time)
                path(reveals, profile)
                print(f"{name}, shares of the profiled time (%): {shares(profile)}")
    finally:
        fleet.dispose()


if __name__ == "__main__":
    main()
