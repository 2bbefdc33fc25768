"""`chargepin bench fleet`: what the fleet service costs, at factory scale and per PIN reveal.

Two claims of docs/PERFORMANCE.md, measured against a real SQLite file, or with `--db-url` a
database the bench makes (and drops) on a PostgreSQL server:

1. Provisioning. `fleet.factory.provision` creates N chargers (1,000,000 by default; rows only,
   no sticker or bundle files) in one transaction, in chunks so that the returned secrets of a
   million chargers never sit in memory at once. Target: a million in 60 s or less.
2. PIN reveal. The real fleet app (`create_app` on that database, uvicorn, one worker, its own
   process) answers `GET /chargers/{serial}/pin?epoch=0` for an owner who claimed one charger by
   its sticker: token lookup, membership, vault decrypt, epoch PIN, audit insert, commit. Next to
   it a bare FastAPI JSON endpoint served the same way (`bare_app` below). C workers on one
   httpx client hit one server, then the other, in alternating slices (A, B, A, B, ...), so both
   see the same machine load. The result is a throughput ratio, reveal / bare; target >= 0.5.
   With `--workers N` (PostgreSQL) the same app behind N uvicorn processes on the same database
   is a third arm in the alternation: the reveal's throughput on N workers against one.

The client runs in the bench's process and shares the machine with the server it measures, so
the server's own CPU time per request (read with psutil) is reported next to the throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
from fastapi import FastAPI
from rich.table import Table
from sqlalchemy import text

from chargepin.core.errors import ChargepinError
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import factory
from chargepin.fleet.db import make_engine, transaction
from chargepin.fleet.operations import MAX_WORKERS, open_database
from chargepin.fleet.vault import ENV_KEY, Vault
from chargepin.lab.bench import DIGITS_MS, percentile, report_bench
from chargepin.lab.bench import machine_info as base_machine_info
from chargepin.lab.ports import free_port

DEFAULT_CHARGERS = 1_000_000
DEFAULT_SECONDS = 5.0
DEFAULT_CONCURRENCY = 8

PROVISION_TARGET_S = 60.0
"""Acceptance: seconds to provision 1,000,000 chargers on SQLite (scaled linearly for other N)."""

PROVISION_TARGET_COUNT = 1_000_000

RATIO_TARGET = 0.5
"""Acceptance: PIN reveal requests/s divided by bare FastAPI requests/s, same server setup."""

CPU_RATIO_TARGET = 1.5
"""Acceptance (issue 13, the headline): the fleet server's CPU per PIN reveal divided by the bare
server's per request, measured side by side. The client shares the cores, so this, not the
throughput ratio, says what the reveal costs."""

SLICES = 4
"""Alternating slices per arm: enough to spread a neighbour's burst over both arms."""

CHUNK = 100_000
"""Chargers per `provision` call inside the one transaction: bounds the secrets held in memory."""

DIGITS_S = 6
"""Decimals of the durations in seconds: microseconds. 200 chargers provision in about 4 ms
on a fast machine, which two decimals reported as 0.0 s."""

WARMUP_S = 0.3
"""Unmeasured load on each server first: imports, connection pools, SQLite page cache."""

SERVER_START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0

MODEL = "Pulsar Max"
FIRMWARE = FirmwareVersion.parse("6.11")
PRODUCED = dt.date(2025, 9, 1)
"""A mandatory-PIN charger: the reveal path is the full one (PIN on, derived from the secret)."""

APP_VERSION = "2.0.0"
BARE_PIN = "123456"
EMAIL = "bench@example.org"
PASSWORD = "bench-password-1"


class BenchError(ChargepinError):
    """The bench could not measure (a server did not start, a request failed)."""


# ---------------------------------------------------------------- the baseline app


def bare_app() -> FastAPI:
    """The baseline: FastAPI answering one JSON object from a constant.

    A plain `def` handler like the fleet's own (which run in Starlette's thread pool because
    they use the synchronous SQLAlchemy session), so the ratio measures the reveal's work and not
    the choice between sync and async handlers.
    """
    app = FastAPI(title="chargepin bench baseline")

    @app.get("/pin")
    def pin() -> dict[str, str]:
        return {"pin": BARE_PIN}

    return app


# ---------------------------------------------------------------- provisioning


def provision_chargers(
    db_url: str, vault: Vault, count: int, keep: int = 1
) -> tuple[float, list[tuple[str, str]]]:
    """Provision `count` chargers in one transaction, CHUNK at a time (the secrets of a million
    never sit in memory at once); (seconds, serial and sticker code of the first `keep`).

    Only the factory calls and the commit are timed; creating the schema is not.
    """
    engine, sessions = open_database(db_url)
    kept: list[tuple[str, str]] = []
    try:
        started = time.perf_counter()
        with transaction(sessions) as db:
            for done in range(0, count, CHUNK):
                made = factory.provision(
                    db,
                    vault,
                    count=min(CHUNK, count - done),
                    model=MODEL,
                    firmware=FIRMWARE,
                    produced=PRODUCED,
                )
                kept.extend((m.serial, m.sticker.encode()) for m in made[: keep - len(kept)])
                del made
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return seconds, kept


def count_rows(db_url: str, table: str) -> int:
    """Rows in one table of the fleet database (chargers made, audit rows written)."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """One uvicorn child on loopback: its base URL and process (for its CPU time)."""

    name: str
    url: str
    command: list[str]
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User and system CPU of the server and its worker processes (live ones)."""
        parent = psutil.Process(self.process.pid)
        total = 0.0
        for process in (parent, *parent.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total


@contextlib.contextmanager
def serve(name: str, factory: str, env: dict[str, str], workers: int = 1) -> Iterator[Server]:
    """Run `uvicorn --factory FACTORY` (`workers` processes, log level warning) until the block
    ends; `fleet serve --workers N` runs the same uvicorn supervisor."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        yield Server(name, f"http://127.0.0.1:{port}", command, process)
    finally:
        process.terminate()
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_ready(client: httpx.AsyncClient, server: Server, path: str) -> None:
    """Poll `path` until the server answers, or BenchError naming the command to try by hand."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            await client.get(server.url + path)
            return
        await asyncio.sleep(0.1)
    raise BenchError(
        f"the {server.name} server did not start (exit code {server.process.poll()}); run "
        f"`{' '.join(server.command)}` to see why"
    )


async def login_and_claim(client: httpx.AsyncClient, url: str, sticker: str) -> dict[str, str]:
    """Register, log in and claim the charger by its sticker; the reveal request's headers."""
    credentials = {"email": EMAIL, "password": PASSWORD}
    _expect("register", await client.post(f"{url}/register", json=credentials), 201)
    login = _expect("login", await client.post(f"{url}/login", json=credentials), 200)
    headers = {"Authorization": f"Bearer {login.json()['token']}", "X-App-Version": APP_VERSION}
    claim = await client.post(f"{url}/chargers/claim", json={"payload": sticker}, headers=headers)
    _expect("claim", claim, 201)
    return headers


def _expect(what: str, response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise BenchError(f"{what} answered {response.status_code}: {response.text[:200]}")
    return response


# ---------------------------------------------------------------- load


@dataclass
class Arm:
    """One endpoint under load: where, with which headers, and what was measured."""

    server: Server
    path: str
    headers: dict[str, str]
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    async def slice(self, client: httpx.AsyncClient, seconds: float, workers: int) -> None:
        """`workers` closed loops for `seconds`; each request must answer 200."""
        url = self.server.url + self.path
        cpu = self.server.cpu_seconds()
        started = time.perf_counter()
        deadline = started + seconds
        latencies: list[float] = []

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await client.get(url, headers=self.headers)
                latencies.append((time.perf_counter() - sent) * 1000.0)
                if response.status_code != 200:
                    raise BenchError(
                        f"{self.server.name} {self.path} answered {response.status_code}: "
                        f"{response.text[:200]}"
                    )

        await asyncio.gather(*(worker() for _ in range(workers)))
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += self.server.cpu_seconds() - cpu
        self.latencies_ms.extend(latencies)

    def summary(self) -> dict[str, Any]:
        """Requests/s, latency percentiles (ms) and the server's CPU per request."""
        n = len(self.latencies_ms)
        if n == 0:
            raise BenchError(f"no {self.server.name} request completed; give more --seconds")
        return {
            "requests": n,
            "seconds": round(self.seconds, DIGITS_S),
            "requests_per_s": round(n / self.seconds, 1),
            "latency_ms": latency_summary(self.latencies_ms),
            "server_cpu_ms_per_request": round(self.cpu_seconds * 1000.0 / n, 3),
        }


def latency_summary(samples: Sequence[float]) -> dict[str, float | int]:
    """p50 and p99 (nearest rank: values that were measured) with min, max and count."""
    return {
        "p50": round(percentile(samples, 0.5), DIGITS_MS),
        "p99": round(percentile(samples, 0.99), DIGITS_MS),
        "mean": round(statistics.fmean(samples), DIGITS_MS),
        "min": round(min(samples), DIGITS_MS),
        "max": round(max(samples), DIGITS_MS),
        "n": len(samples),
    }


async def measure_reveal(
    reveal: Server,
    bare: Server,
    sticker: str,
    serial: str,
    seconds: float,
    concurrency: int,
    scaled: Server | None = None,
) -> dict[str, Any]:
    """Claim the charger, warm the servers up, then alternate reveal and bare slices (and the
    reveal on `scaled`, the same database behind N workers, when given)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:
        await wait_ready(client, reveal, "/openapi.json")
        await wait_ready(client, bare, "/pin")
        if scaled is not None:
            await wait_ready(client, scaled, "/openapi.json")
        headers = await login_and_claim(client, reveal.url, sticker)
        arms = [
            Arm(reveal, f"/chargers/{serial}/pin?epoch=0", headers),
            Arm(bare, "/pin", {"X-App-Version": APP_VERSION}),
        ]
        if scaled is not None:
            arms.append(Arm(scaled, f"/chargers/{serial}/pin?epoch=0", headers))
        for arm in arms:
            await arm.slice(client, WARMUP_S, concurrency)
            arm.latencies_ms.clear()
            arm.seconds = arm.cpu_seconds = 0.0
        for _ in range(SLICES):
            for arm in arms:
                await arm.slice(client, seconds / SLICES, concurrency)
    ours, theirs = (arm.summary() for arm in arms[:2])
    # The verdict is on the reported value, so that the report never contradicts itself.
    ratio = round(ours["requests_per_s"] / theirs["requests_per_s"], 3)
    bare_cpu = max(theirs["server_cpu_ms_per_request"], 0.001)
    cpu_ratio = round(ours["server_cpu_ms_per_request"] / bare_cpu, 3)
    result: dict[str, Any] = {
        "reveal": ours,
        "bare": theirs,
        "cpu_ratio": cpu_ratio,
        "cpu_target": CPU_RATIO_TARGET,
        "cpu_pass": cpu_ratio <= CPU_RATIO_TARGET,
        "ratio": ratio,
        "target": RATIO_TARGET,
        "pass": ratio >= RATIO_TARGET,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if scaled is not None:
        more = arms[2].summary()
        result["reveal_workers"] = more
        result["workers_to_one_ratio"] = round(more["requests_per_s"] / ours["requests_per_s"], 3)
    return result


# ---------------------------------------------------------------- databases


@contextlib.contextmanager
def bench_database(directory: Path, server_url: str | None) -> Iterator[str]:
    """The bench's empty fleet database: a SQLite file in `directory`, or (with `server_url`,
    a PostgreSQL URL) a database of its own made on that server and dropped afterwards, so a
    bench never writes into the fleet's database."""
    if server_url is None:
        yield f"sqlite:///{directory / 'fleet.db'}"
        return
    if not server_url.startswith("postgresql"):
        raise BenchError(
            f"--db-url must be a PostgreSQL URL (postgresql+psycopg://user@host:port/db), not "
            f"{server_url.split(':', 1)[0]!r}; without it the bench uses a SQLite file"
        )
    from sqlalchemy import create_engine, make_url

    url = make_url(server_url)
    name = f"chargepin_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as error:
        admin.dispose()
        raise BenchError(
            f"could not create the bench's database on {url.render_as_string(hide_password=True)}"
            f" ({type(error).__name__}: {str(error).splitlines()[0]}); the user needs CREATEDB"
        ) from error
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def database_mib(db_url: str, directory: Path) -> float:
    """The fleet database's size on disk after provisioning, MiB."""
    if db_url.startswith("sqlite"):
        return round((directory / "fleet.db").stat().st_size / 2**20, 1)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            size = connection.execute(text("SELECT pg_database_size(current_database())"))
            return round(int(size.scalar_one()) / 2**20, 1)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    """The pairing bench's machine block plus the web stack's versions."""
    info = base_machine_info(Path(tempfile.gettempdir()))
    for package in ("fastapi", "starlette", "uvicorn", "httpx", "sqlalchemy"):
        info[package] = metadata.version(package)
    return info


def command_line(
    json_path: Path | None,
    chargers: int,
    seconds: float,
    concurrency: int,
    db_url: str | None = None,
    workers: int = 1,
) -> str:
    """The CLI command that reproduces a run with these settings (the URL without password)."""
    parts = ["chargepin bench fleet"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(f"--chargers {chargers} --seconds {seconds:g} --concurrency {concurrency}")
    if db_url is not None:
        from sqlalchemy import make_url

        parts.append(f"--db-url {make_url(db_url).render_as_string(hide_password=True)}")
    if workers > 1:
        parts.append(f"--workers {workers}")
    return " ".join(parts)


def run_bench(
    directory: Path,
    chargers: int,
    seconds: float,
    concurrency: int,
    command: str = "",
    server_url: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; the database is a SQLite file under `directory`,
    or a throwaway database on the PostgreSQL server of `server_url`. With `workers` > 1
    (PostgreSQL only) the PIN reveal is measured on 1 and on `workers` API processes."""
    if chargers < 1:
        raise ValueError(f"chargers must be at least 1, got {chargers}")
    if not seconds > 0:
        raise ValueError(f"seconds must be more than 0, got {seconds}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1 to {MAX_WORKERS}, got {workers}")
    if workers > 1 and server_url is None:
        raise ValueError(
            f"--workers {workers} needs PostgreSQL (--db-url postgresql+psycopg://...): several "
            "API processes share one database, and SQLite serves one process"
        )
    with bench_database(directory, server_url) as db_url:
        return _run_bench(directory, db_url, chargers, seconds, concurrency, command, workers)


def _run_bench(
    directory: Path,
    db_url: str,
    chargers: int,
    seconds: float,
    concurrency: int,
    command: str,
    workers: int,
) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    vault = Vault.generate()
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "database": make_engine_name(db_url),
        "chargers": chargers,
        "seconds_per_arm": seconds,
        "concurrency": concurrency,
        "workers": workers,
        "slices_per_arm": SLICES,
    }

    provision_s, ((serial, sticker),) = provision_chargers(db_url, vault, chargers)
    # The verdict is on the reported values, so that the report never contradicts itself.
    seconds_s = round(provision_s, DIGITS_S)
    target_s = round(PROVISION_TARGET_S * chargers / PROVISION_TARGET_COUNT, DIGITS_S)
    report["provisioning"] = {
        "chargers": count_rows(db_url, "chargers"),
        "seconds": seconds_s,
        "rows_per_s": round(chargers / provision_s, 1),
        "target_s": target_s,
        "target_rows_per_s": round(PROVISION_TARGET_COUNT / PROVISION_TARGET_S),
        "pass": seconds_s <= target_s,
        "database_mib": database_mib(db_url, directory),
    }

    env = {"CHARGEPIN_DB_URL": db_url, ENV_KEY: vault.current.hex()}
    with contextlib.ExitStack() as stack:
        reveal = stack.enter_context(serve("fleet", "chargepin.fleet.app:create_app", env))
        bare = stack.enter_context(serve("bare", f"{__name__}:bare_app", {}))
        scaled = None
        if workers > 1:
            scaled = stack.enter_context(
                serve(f"fleet ({workers} workers)", "chargepin.fleet.app:create_app", env, workers)
            )
        report["pin_reveal"] = asyncio.run(
            measure_reveal(reveal, bare, sticker, serial, seconds, concurrency, scaled)
        )
    report["pin_reveal"]["audit_rows"] = count_rows(db_url, "pin_reveals")
    report["targets"] = {
        "provisioning_s_per_million": PROVISION_TARGET_S,
        "reveal_to_bare_ratio": RATIO_TARGET,
        "reveal_to_bare_server_cpu": CPU_RATIO_TARGET,
    }
    reveal_report = report["pin_reveal"]
    report["pass"] = bool(
        report["provisioning"]["pass"] and reveal_report["pass"] and reveal_report["cpu_pass"]
    )
    report["duration_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    return report


def make_engine_name(db_url: str) -> str:
    """ "sqlite" or "postgresql": which database the report's figures are of."""
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


def _duration(seconds: float) -> str:
    """A measured duration for the table: milliseconds under a second, else seconds."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _verdict(passed: bool) -> str:
    return "pass" if passed else "MISS"


def report_table(report: dict[str, Any]) -> Table:
    """The short human summary the CLI prints."""
    provisioning = report["provisioning"]
    reveal = report["pin_reveal"]
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    table = Table(title=f"chargepin bench fleet ({names[report.get('database', 'sqlite')]})")
    table.add_column("measurement")
    table.add_column("rate /s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("server CPU", justify="right")
    table.add_row(
        f"provision {provisioning['chargers']:,} in {_duration(provisioning['seconds'])}",
        f"{provisioning['rows_per_s']:,.0f}",
        "",
        "",
        "",
    )
    table.add_row(
        f"  target <= {provisioning['target_s']:g} s: {_verdict(provisioning['pass'])}",
        "",
        "",
        "",
        "",
    )
    arms = [("PIN reveal (fleet app)", reveal["reveal"]), ("bare FastAPI", reveal["bare"])]
    if "reveal_workers" in reveal:
        arms.insert(1, (f"PIN reveal, {report['workers']} workers", reveal["reveal_workers"]))
    for label, arm in arms:
        table.add_row(
            label,
            f"{arm['requests_per_s']:,.0f}",
            f"{arm['latency_ms']['p50']:.1f}",
            f"{arm['latency_ms']['p99']:.1f}",
            f"{arm['server_cpu_ms_per_request']:.2f} ms",
        )
    table.add_row(
        f"server CPU reveal / bare (<= {reveal['cpu_target']}): {_verdict(reveal['cpu_pass'])}",
        "",
        "",
        "",
        f"{reveal['cpu_ratio']:.2f}",
    )
    table.add_row(
        f"ratio reveal / bare (>= {reveal['target']}): {_verdict(reveal['pass'])}",
        f"{reveal['ratio']:.2f}",
        "",
        "",
        "",
    )
    if "reveal_workers" in reveal:
        table.add_row(
            f"{report['workers']} workers / 1 worker",
            f"{reveal['workers_to_one_ratio']:.2f}",
            "",
            "",
            "",
        )
    return table


def run_fleet_bench(
    json_path: Path | None,
    chargers: int = DEFAULT_CHARGERS,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    db_url: str | None = None,
    workers: int = 1,
) -> int:
    """Run the bench, print a short table, write the JSON report; the exit code.

    0 when both targets are met, 1 when one is missed, 2 when the bench could not measure (the
    message says why).
    """
    command = command_line(json_path, chargers, seconds, concurrency, db_url, workers)

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-fleet-") as tmp:
            return run_bench(Path(tmp), chargers, seconds, concurrency, command, db_url, workers)

    return report_bench(
        measure,
        (ChargepinError, ValueError, httpx.HTTPError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
