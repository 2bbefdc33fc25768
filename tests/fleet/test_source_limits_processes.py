"""The request-rate limit across real processes: a `chargepin fleet serve` and a `chargepin
fleet gateway` on one PostgreSQL database, both given the limits' options and the trusted
proxy header, count one source's requests together, and a process killed with SIGKILL takes
none of the count with it (the counter is in the database)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from chargepin.lab.ports import free_ports
from tests.helpers.fleet_settings import SERVE_HASHING
from tests.helpers.processes import Bench, until_listening

RATE = 4
MARGIN = 300.0
"""Seconds the counting window must still have when the test starts: far more than it takes."""
CLIENT = {"X-Forwarded-For": "203.0.113.5"}
"""What the proxy in front says the client is (loopback, the test's own address, is exempt)."""


def window_with_room(now: float) -> int:
    """A window length (whole seconds, 1000 to 3600) whose current window ends at least MARGIN
    after `now`: the processes count on the real clock, so the test picks the window that
    cannot end under it rather than waiting for a fresh one to start."""
    for window in range(1000, 3601):
        if window - now % window >= MARGIN:
            return window
    raise AssertionError(f"no window of 1000-3600 s has {MARGIN} s left at {now}")


def test_the_window_chosen_has_room_whatever_the_time() -> None:
    for now in (0.0, 999.9, 3599.5, 1_764_950_399.0, 1_764_950_400.0 - 1, time.time()):
        window = window_with_room(now)
        assert window - now % window >= MARGIN


@pytest.mark.slow
async def test_a_worker_and_a_gateway_share_a_source_s_rate_and_a_killed_one_forgets_nothing(
    db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("shared counters are PostgreSQL's: SQLite serves one process")
    window = window_with_room(time.time())
    bench = Bench(tmp_path)
    ports = free_ports(2)
    limits = [
        "--db", db_url, "--vault-key-file", str(tmp_path / "vault-key.json"),
        "--source-rate", str(RATE), "--source-window", str(window),
        "--source-header", "X-Forwarded-For", *SERVE_HASHING,
    ]  # fmt: skip
    try:
        bench.start("fleet", "serve", "--port", str(ports[0]), *limits, name="api")
        await until_listening(ports[0])
        bench.start("fleet", "gateway", "--port", str(ports[1]), *limits, name="gateway")
        await until_listening(ports[1])
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        async with httpx.AsyncClient(timeout=30, headers=CLIENT) as http:
            statuses = [(await http.get(f"{bases[i % 2]}/health")).status_code for i in range(RATE)]
            assert statuses == [200] * RATE  # two each
            for base in bases:  # the fifth and sixth, whichever process: over the rate
                refused = await http.get(f"{base}/health")
                assert refused.status_code == 429, refused.text
                assert 1 <= int(refused.headers["Retry-After"]) <= window
            other = {"X-Forwarded-For": "203.0.113.6"}  # another client behind the proxy
            assert (await http.get(f"{bases[1]}/health", headers=other)).status_code == 200
            api = bench.services[0].process
            api.send_signal(signal.SIGKILL)
            api.wait(timeout=10)
            assert (await http.get(f"{bases[1]}/health")).status_code == 429
    finally:
        bench.close()
