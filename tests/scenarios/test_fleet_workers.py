"""`chargepin fleet serve --workers N`: several API processes on one port, sharing nothing but
PostgreSQL. Requests land on both, a login throttle counts across them, and a worker killed
with SIGKILL leaves the others answering (and uvicorn's supervisor starts a new one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from chargepin.core.login_throttle import ACCOUNT_LOCKOUT
from chargepin.lab.ports import free_port
from tests.helpers.cli import invoke
from tests.helpers.fleet_settings import SERVE_HASHING

pytestmark = pytest.mark.slow

EMAIL = "owner@example.com"
PASSWORD = "correct horse battery"
START_TIMEOUT = 90.0
SPREAD_TRIES = 200


def _command(db_url: str, port: int, tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chargepin.cli",
        "fleet",
        "serve",
        "--workers",
        "2",
        "--db",
        db_url,
        "--port",
        str(port),
        "--vault-key-file",
        str(tmp_path / "vault-key.json"),
        *SERVE_HASHING,
    ]


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not db_url.startswith("postgresql"):
        pytest.skip("several workers need PostgreSQL (SQLite's refusal: the test below)")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        _command(db_url, port, tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=5.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fleet serve --workers 2 did not answer"
            time.sleep(0.1)  # polling a port, bounded by the deadline
        yield url, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20.0)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _worker(client: httpx.Client) -> int:
    answer = client.get("/health")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["worker"])


def _client_on(url: str, worker: int | None = None) -> tuple[httpx.Client, int]:
    """A client whose one keep-alive connection is served by `worker` (any when None)."""
    for _ in range(SPREAD_TRIES):
        client = httpx.Client(base_url=url, timeout=10.0, limits=httpx.Limits(max_connections=1))
        answered = _worker(client)
        if worker is None or answered == worker:
            return client, answered
        client.close()
    pytest.fail(f"no connection of {SPREAD_TRIES} reached worker {worker}")


def _spread(url: str) -> set[int]:
    """The workers that answered fresh connections, until two did (bounded)."""
    seen: set[int] = set()
    for _ in range(SPREAD_TRIES):
        client, worker = _client_on(url)
        client.close()
        seen.add(worker)
        if len(seen) == 2:
            break
    return seen


def test_two_workers_share_the_port_a_throttle_and_survive_a_kill(
    workers: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, parent = workers
    pids = _spread(url)
    assert len(pids) == 2, f"only {pids} answered"
    children = {child.pid for child in psutil.Process(parent.pid).children(recursive=True)}
    assert pids <= children
    first, second = sorted(pids)

    assert httpx.post(f"{url}/register", json={"email": EMAIL, "password": PASSWORD}).is_success
    # The account's wrong passwords alternate between the two processes: an in-process count
    # would see half of them in each and never lock.
    answers = []
    for attempt in range(ACCOUNT_LOCKOUT.failures):
        client, _ = _client_on(url, (first, second)[attempt % 2])
        wrong = {"email": EMAIL, "password": f"wrong password {attempt}"}
        answers.append(client.post("/login", json=wrong).status_code)
        client.close()
    assert set(answers[:-1]) == {401}, answers
    for worker in (first, second):
        client, _ = _client_on(url, worker)
        locked = client.post("/login", json={"email": EMAIL, "password": PASSWORD})
        client.close()
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["Retry-After"]) > 0

    os.kill(second, signal.SIGKILL)
    # Reaped by its parent, uvicorn's supervisor: gone within a bounded wait.
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(second).wait(10.0)
    for _ in range(20):
        with httpx.Client(base_url=url, timeout=10.0) as client:
            assert _worker(client) != second
            locked = client.post("/login", json={"email": EMAIL, "password": PASSWORD})
            assert locked.status_code == 429, locked.text
    # uvicorn's supervisor replaces the dead worker: two processes answer again.
    deadline = time.monotonic() + START_TIMEOUT
    while len(_spread(url) - {second}) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)  # waiting for the new process, bounded by the deadline


def test_several_workers_on_sqlite_are_refused_with_the_reason(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("postgresql"):
        pytest.skip("the refusal is SQLite's")
    # In-process: the refusal comes before uvicorn, the schema or the vault's key file.
    code, out, err = invoke(*_command(db_url, free_port(), tmp_path)[3:])
    assert code == 2, (out, err)
    assert "--workers 2 needs PostgreSQL" in err
    assert not (tmp_path / "vault-key.json").exists()
    assert not (tmp_path / "fleet.db").exists()
