"""The request-rate limit across real processes: two `chargepin fleet serve` on one PostgreSQL
database count one source's requests together, and a worker killed with SIGKILL takes none of
the count with it (the counter is in the database)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from chargepin.lab.ports import free_ports
from tests.helpers.processes import Bench, until_listening

RATE = 4
WINDOW = 3600


@pytest.mark.slow
async def test_two_workers_share_one_source_s_rate_and_a_killed_one_forgets_nothing(
    db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("shared counters are PostgreSQL's: SQLite serves one process")
    left = WINDOW - time.time() % WINDOW
    if left < 30:  # the window (the service's real clock) must not end during the test
        time.sleep(left)
    bench = Bench(tmp_path)
    ports = free_ports(2)
    key = tmp_path / "vault-key.json"
    try:
        for n, port in enumerate(ports):
            bench.start(
                "fleet", "serve", "--db", db_url, "--port", str(port),
                "--vault-key-file", str(key),
                "--source-rate", str(RATE), "--source-window", str(WINDOW),
                # 127.0.0.1 is this test's address: limit it (loopback is exempt by default).
                "--source-exempt", "192.0.2.0/24",
                name=f"worker{n}",
            )  # fmt: skip
            await until_listening(port)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        async with httpx.AsyncClient(timeout=30) as http:
            statuses = [(await http.get(f"{bases[i % 2]}/me")).status_code for i in range(RATE)]
            assert statuses == [401] * RATE  # two each
            for base in bases:  # the fifth and sixth, whichever worker: over the rate
                refused = await http.get(f"{base}/me")
                assert refused.status_code == 429, refused.text
                assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
            worker = bench.services[0].process
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            assert (await http.get(f"{bases[1]}/me")).status_code == 429
    finally:
        bench.close()
