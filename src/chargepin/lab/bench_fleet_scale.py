"""`chargepin bench fleet-scale`: the fleet scaled out on one PostgreSQL, on one machine.

Issue 12's bench, every party in its own process on 127.0.0.1:

1. **PostgreSQL.** A throwaway cluster of its own (initdb in a temporary directory, a free port,
   fsync and synchronous_commit on, as a production server runs; stopped and deleted after),
   or with `--db-url` a server the operator gives, where the bench makes a database and drops it
   after. The report names which, and the server's durability settings.
2. **Provisioning.** N chargers (1,000,000 by default) by the factory's path (COPY on
   PostgreSQL) in one transaction, timed; the first S keep their serial and CSMS password.
3. **pgbench**, the reference for the write rate, on the same cluster and database: the
   built-in simple-update script, and an insert-only script shaped like our event write (one
   row of `station_security_events`' shape per transaction, ON CONFLICT DO NOTHING RETURNING).
4. **Gateways.** G `chargepin fleet gateway` processes (3 by default). S simulated stations
   (20,000) in child processes of at most STATIONS_PER_CLIENT each (`ocpp_stations`, roaming):
   half have the first gateway (the victim) as home, the rest are spread over the others. All
   connect and boot at once; then C events in flight over all stations for `--seconds`: the
   events stored per second, counted in the database.
5. **The storm.** kill -9 of the victim while the events flow: its stations reconnect to the
   survivors with back-off (each its own order, so they spread evenly) and resend the events
   that were not answered. Time from the kill until every station is connected again; then the
   stations stop creating events and resend what is pending; every event a station saw
   answered must be in the database (lost = 0) and no event id twice (duplicates = 0).
6. **PIN reveal** on 1 and 2 API workers (`bench fleet`'s measurement, same database).

Per process: CPU seconds and peak RSS (VmHWM) of each gateway, station process and the
PostgreSQL cluster (its postmaster and backends, own cluster only); connections each gateway
holds (the kernel's count); PostgreSQL's connections (sampled from pg_stat_activity).

File descriptors: a process holds a socket per station, and the soft limit (`ulimit -n`) is
raised to the hard one in every child; a plan that would need more than the hard limit in one
process (a survivor after the storm, a station process) is refused before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
from rich.table import Table
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from chargepin.core.csms_auth import csms_password
from chargepin.core.errors import ChargepinError
from chargepin.fleet import factory
from chargepin.fleet.db import transaction
from chargepin.fleet.operations import open_database
from chargepin.fleet.vault import ENV_KEY, Vault
from chargepin.lab.bench import report_bench
from chargepin.lab.bench_fleet import (
    FIRMWARE,
    MODEL,
    PRODUCED,
    bench_database,
    database_mib,
    machine_info,
    measure_reveal,
)
from chargepin.lab.bench_fleet import serve as serve_app
from chargepin.lab.bench_ocpp import CsmsServer
from chargepin.lab.ocpp_stations import ClientError, StationClient, url_order
from chargepin.lab.orphans import preexec
from chargepin.lab.ports import LOOPBACK, free_port

DEFAULT_CHARGERS = 1_000_000
DEFAULT_STATIONS = 20_000
DEFAULT_GATEWAYS = 3
DEFAULT_SECONDS = 10.0
DEFAULT_CONCURRENCY = 64
DEFAULT_REVEAL_SECONDS = 4.0
DEFAULT_PGBENCH_SECONDS = 10.0
REVEAL_CONCURRENCY = 8
REVEAL_WORKERS = 2

STATIONS_PER_CLIENT = 5_000
"""Stations per child process by default (`bench ocpp` measured 5,000 per process)."""
FD_MARGIN = 256
"""Descriptors a process needs beside its sockets: libraries, logs, pipes, database pool."""
CHUNK = 100_000
"""Chargers per factory call inside the one transaction (bounds the secrets in memory)."""

PGBENCH_CLIENTS = 8
PGBENCH_SCALE = 10
"""pgbench's scale (100,000 accounts each): 10 keeps its rows well inside shared buffers."""

START_TIMEOUT = 60.0
REACH_TIMEOUT = 1.0
"""Seconds a --db-url server gets to answer: it is running already, or the URL is wrong."""
HOLD_TIMEOUT = 900.0
"""Seconds for every station to connect and boot at the start (20,000 on 2 shared cores)."""
STORM_TIMEOUT = 900.0
"""Seconds after the kill for every station to be connected again."""
DRAIN_TIMEOUT = 120.0
STATION_TIMEOUT = 300.0
"""Seconds one station may wait for a connection, a boot or an answer."""
CLIENT_SLACK = 60.0
POLL = 0.1
"""Seconds between looks at the stations' status during the storm."""
SAMPLE = 0.5
"""Seconds between samples of PostgreSQL's connections."""

EVENT_TABLE = """CREATE TABLE pgbench_events (
    id bigserial PRIMARY KEY,
    charger_id integer NOT NULL,
    event_id varchar(64),
    type varchar(50) NOT NULL,
    tech_info varchar(255),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (charger_id, event_id)
)"""
"""pgbench's insert-only table: `station_security_events`' columns, key and unique constraint."""

EVENT_SCRIPT = r"""\set charger random(1, 1000000)
INSERT INTO pgbench_events (charger_id, event_id, type, tech_info, occurred_at, received_at)
VALUES (:charger, gen_random_uuid()::text, 'MaintenanceLoginFailed',
        '{"origin":"ble","phone":"AA:BB:CC:DD:EE:01","reason":"wrong_pin","epoch":0}',
        now(), now())
ON CONFLICT DO NOTHING RETURNING charger_id, event_id;
"""
"""One event per transaction, as the gateways' writer does with a batch of one."""

SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


class BenchError(ChargepinError):
    """The bench could not measure (no PostgreSQL, a process died, too few descriptors)."""


# ---------------------------------------------------------------- processes


def peak_rss_mib(pid: int) -> float:
    """VmHWM (the process's peak resident set) from /proc, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise BenchError(f"no VmHWM for process {pid}")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def figures(pid: int) -> dict[str, float]:
    """A live process's CPU seconds and peak RSS."""
    return {"cpu_s": round(cpu_seconds(pid), 2), "peak_rss_mib": peak_rss_mib(pid)}


def file_limit() -> int:
    """The hard limit of open files: what a child can raise its soft limit to."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_limit_in_child() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Gateway(CsmsServer):
    """One `chargepin fleet gateway` process: bench ocpp's CSMS server, numbered."""

    def __init__(
        self,
        index: int,
        port: int,
        command: list[str],
        process: subprocess.Popen[bytes],
        log: Path,
    ) -> None:
        super().__init__(f"gateway {index}", port, command, process, log)
        self.index = index

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def gateways(
    count: int, db_url: str, env: dict[str, str], directory: Path
) -> Iterator[list[Gateway]]:
    """Start `count` gateways together, wait until each listens; stop them after."""
    started: list[Gateway] = []
    try:
        for index in range(count):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "chargepin.cli",
                "fleet",
                "gateway",
                "--db",
                db_url,
                "--port",
                str(port),
            ]
            log = directory / f"gateway-{index}.log"
            die = preexec()

            def child(die: Any = die) -> None:
                raise_limit_in_child()
                die()

            with log.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    env={**os.environ, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=child,
                )
            started.append(Gateway(index, port, command, process, log))
        for gateway in started:
            gateway.wait_listening()
        yield started
    finally:
        for gateway in started:
            gateway.stop()


# ---------------------------------------------------------------- PostgreSQL


def pg_bindir(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest installed PostgreSQL's programs (Debian's layout under `root`), or BenchError
    saying how to get one."""
    found = sorted(
        root.glob("*/bin"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)] or [0],
    )
    for bindir in reversed(found):
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise BenchError(
        f"PostgreSQL is not installed (no {root}/*/bin/initdb): install Debian's postgresql "
        "package, or give --db-url postgresql+psycopg://user@127.0.0.1:PORT/db"
    )


def pgbench_path() -> Path:
    for candidate in (
        shutil.which("pgbench"),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench")),
    ):
        if candidate is not None and Path(candidate).exists():
            return Path(candidate)
    raise BenchError("pgbench is not installed: install Debian's postgresql-contrib/postgresql")


def wait_for_server(
    url: str, process: subprocess.Popen[bytes] | None, log: Path | None, timeout: float
) -> None:
    """Until PostgreSQL at `url` accepts a query (bounded by `timeout`), or BenchError naming
    the URL (without its password), the reason and the server's log if it is ours."""
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    reason = "no answer"
    try:
        while process is None or process.poll() is None:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return
            except DBAPIError as failure:  # not accepting connections yet: reported below
                reason = str(failure.orig or failure).strip().splitlines()[0]
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        engine.dispose()
    where = make_url(url).render_as_string(hide_password=True)
    said = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise BenchError(
        f"cannot reach PostgreSQL at {where} ({reason})" + (f"; its log:\n{said}" if said else "")
    )


@dataclass
class Cluster:
    """A PostgreSQL server for the bench: its URL (database `postgres`) and, when the bench
    started it, its postmaster (whose tree's CPU and memory are reported)."""

    url: str
    own: bool
    postmaster: subprocess.Popen[bytes] | None = None

    def tree(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(self.postmaster.pid)
            return [parent, *parent.children(recursive=True)]
        return []


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """initdb in a temporary directory, postgres on a free loopback port with fsync on (as
    root: as the `postgres` user, which PostgreSQL requires); stopped and deleted after, and
    killed by the kernel if the bench is (parent-death signal)."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="chargepin-bench-pg-"))
    uid = gid = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            raise BenchError(
                "running as root needs the `postgres` user to run PostgreSQL"
            ) from None
        uid, gid = user.pw_uid, user.pw_gid
        os.chown(root, uid, gid)
    data, log = root / "data", root / "server.log"
    postmaster: subprocess.Popen[bytes] | None = None
    try:
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            preexec_fn=preexec(uid=uid, gid=gid),
            check=False,
        )
        if initdb.returncode != 0:
            raise BenchError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-1000:]}")
        port = free_port()
        with log.open("wb") as output:
            postmaster = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(root),
                    "-c",
                    f"listen_addresses={LOOPBACK}",
                    "-c",
                    "fsync=on",
                    "-c",
                    "synchronous_commit=on",
                    "-c",
                    "max_connections=300",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec(signal.SIGQUIT, uid=uid, gid=gid),
            )
        url = f"postgresql+psycopg://postgres@{LOOPBACK}:{port}/postgres"
        wait_for_server(url, postmaster, log, START_TIMEOUT)
        yield Cluster(url, own=True, postmaster=postmaster)
    finally:
        if postmaster is not None and postmaster.poll() is None:
            postmaster.send_signal(signal.SIGINT)  # fast shutdown
            try:
                postmaster.wait(30.0)
            except subprocess.TimeoutExpired:
                postmaster.kill()
                postmaster.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def cluster(db_url: str | None) -> Iterator[Cluster]:
    """The bench's own cluster, or the server of `db_url` (PostgreSQL only)."""
    if db_url is None:
        with own_cluster() as own:
            yield own
        return
    if not db_url.startswith("postgresql"):
        raise BenchError(
            f"--db-url must be a PostgreSQL URL (postgresql+psycopg://user@host:port/db), not "
            f"{db_url.split(':', 1)[0]!r}: the scale-out (gateways on one database, LISTEN/"
            "NOTIFY, several API workers) is PostgreSQL's; without --db-url the bench starts a "
            "throwaway PostgreSQL of its own"
        )
    wait_for_server(db_url, None, None, REACH_TIMEOUT)
    yield Cluster(db_url, own=False)


def server_settings(db_url: str) -> dict[str, str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return {
                name: str(connection.execute(text(f"SHOW {name}")).scalar_one())
                for name in SETTINGS
            }
    finally:
        engine.dispose()


class ConnectionSampler:
    """PostgreSQL's client connections (pg_stat_activity, client backends), sampled on a
    thread every SAMPLE s: the peak, in total and on the bench's database."""

    def __init__(self, db_url: str) -> None:
        self.engine = create_engine(db_url, pool_size=1, max_overflow=0)
        self.peak_total = 0
        self.peak_database = 0
        self.samples = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = text(
            "SELECT count(*), count(*) FILTER (WHERE datname = current_database()) "
            "FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        with self.engine.connect() as connection:
            while not self.stopped.is_set():
                total, mine = connection.execute(query).one()
                connection.rollback()
                self.peak_total = max(self.peak_total, int(total))
                self.peak_database = max(self.peak_database, int(mine))
                self.samples += 1
                self.stopped.wait(SAMPLE)

    def __enter__(self) -> ConnectionSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10.0)
        self.engine.dispose()

    def summary(self) -> dict[str, int]:
        return {
            "peak_client_connections": self.peak_total,
            "peak_on_bench_database": self.peak_database,
            "samples": self.samples,
        }


def pgbench(db_url: str, seconds: float, scale: int, directory: Path) -> dict[str, Any]:
    """pgbench's built-in simple-update and our insert-only event script, PGBENCH_CLIENTS
    clients each, on the bench's database (its tables go with it); tps as pgbench reports it."""
    program = pgbench_path()
    url = make_url(db_url)
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    base = [
        str(program),
        "-h",
        url.host or LOOPBACK,
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    database = url.database or "postgres"

    def run(args: list[str], what: str) -> str:
        done = subprocess.run(
            [*base, *args, database],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=preexec(),
        )
        if done.returncode != 0:
            raise BenchError(f"pgbench {what} failed: {done.stderr[-1000:]}")
        return done.stdout

    run(["-i", "-q", "-s", str(scale)], "-i")
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(EVENT_TABLE))
    finally:
        engine.dispose()
    script = directory / "event-insert.sql"
    script.write_text(EVENT_SCRIPT)
    timed = ["-n", "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(max(1, round(seconds)))]
    results: dict[str, Any] = {
        "clients": PGBENCH_CLIENTS,
        "threads": 2,
        "seconds": max(1, round(seconds)),
        "scale": scale,
    }
    for name, args in (
        ("simple_update", ["-b", "simple-update"]),
        ("event_insert", ["-f", str(script)]),
    ):
        output = run([*timed, *args], name)
        tps = re.search(r"tps = ([\d.]+)", output)
        latency = re.search(r"latency average = ([\d.]+) ms", output)
        if tps is None:
            raise BenchError(f"pgbench {name} printed no tps: {output[-500:]}")
        results[name] = {
            "tps": round(float(tps.group(1)), 1),
            "latency_ms": None if latency is None else float(latency.group(1)),
        }
    return results


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """Who connects where: station i's URL order (home first), and what each process holds."""

    stations: int
    gateways: int
    clients: int

    def home(self, index: int) -> int:
        """Every other station lives on gateway 0, the victim (half of them); the rest spread
        over the others. Alternating, so that the stations' first connections, brought up in
        order, go to every gateway at once."""
        if index % 2 == 0:
            return 0
        return 1 + (index // 2) % (self.gateways - 1)

    def order(self, index: int) -> list[int]:
        return url_order(self.gateways, self.home(index), index // 2)

    def shares(self) -> list[list[int]]:
        """Station indexes per station process: contiguous runs (each alternates homes)."""
        bounds = [round(c * self.stations / self.clients) for c in range(self.clients + 1)]
        return [list(range(bounds[c], bounds[c + 1])) for c in range(self.clients)]

    def survivor_peak(self) -> int:
        """Sockets the busiest survivor holds after the storm."""
        load = [0] * self.gateways
        for index in range(self.stations):
            order = self.order(index)
            load[order[1] if order[0] == 0 else order[0]] += 1
        return max(load[1:])

    def check_files(self, limit: int) -> None:
        """BenchError, before anything starts, when a process would need more descriptors
        than the hard limit allows."""
        survivor = self.survivor_peak() + FD_MARGIN
        client = math.ceil(self.stations / self.clients) + FD_MARGIN
        if survivor > limit:
            raise BenchError(
                f"after the storm a surviving gateway would hold {self.survivor_peak():,} "
                f"sockets, more than the {limit:,} open files a process may have (ulimit -Hn) "
                f"less {FD_MARGIN}: give more --gateways (the survivors share the victim's "
                "stations) or fewer --stations"
            )
        if client > limit:
            raise BenchError(
                f"a station process would hold {math.ceil(self.stations / self.clients):,} "
                f"sockets, more than the {limit:,} open files a process may have (ulimit -Hn) "
                f"less {FD_MARGIN}: give more --clients"
            )


# ---------------------------------------------------------------- provisioning


def provision_fleet(
    db_url: str, vault: Vault, chargers: int, stations: int
) -> tuple[float, list[tuple[str, str]], tuple[str, str]]:
    """`chargers` chargers in one transaction (COPY on PostgreSQL), timed; the serial and
    CSMS password of the first `stations`, and the serial and sticker of the last one made
    (the reveal's charger, held by no station)."""
    engine, sessions = open_database(db_url)
    kept: list[tuple[str, str]] = []
    last = ("", "")
    try:
        started = time.perf_counter()
        with transaction(sessions) as db:
            for done in range(0, chargers, CHUNK):
                made = factory.provision(
                    db,
                    vault,
                    count=min(CHUNK, chargers - done),
                    model=MODEL,
                    firmware=FIRMWARE,
                    produced=PRODUCED,
                )
                for charger in made[: max(0, stations - len(kept))]:
                    kept.append((charger.serial, csms_password(charger.secret, charger.serial)))
                last = (made[-1].serial, made[-1].sticker.encode())
                del made
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return seconds, kept, last


def count_events(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM station_security_events")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def stored_events(db_url: str) -> tuple[int, set[str]]:
    """Rows of station_security_events, and the distinct event ids among them."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            ids = [
                row[0]
                for row in connection.execute(text("SELECT event_id FROM station_security_events"))
            ]
    finally:
        engine.dispose()
    return len(ids), {i for i in ids if i is not None}


# ---------------------------------------------------------------- the run


def merge_counts(answers: Sequence[dict[str, Any]], key: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for answer in answers:
        for name, count in answer[key].items():
            total[name] = total.get(name, 0) + int(count)
    return total


def totals(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stations' counts summed over the station processes."""
    keys = ("stations", "connected", "created", "acked", "pending", "resent", "connects", "drops")
    return {
        **{key: sum(int(a[key]) for a in answers) for key in keys},
        "failures": merge_counts(answers, "failures"),
    }


async def everyone(
    clients: Sequence[StationClient], commands: Sequence[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    await asyncio.gather(*(c.send(command) for c, command in zip(clients, commands, strict=True)))
    return list(await asyncio.gather(*(c.answer(timeout) for c in clients)))


@dataclass
class Run:
    """What the run keeps between its steps."""

    directory: Path
    db_url: str
    plan: Plan
    credentials: list[tuple[str, str]]
    seconds: float
    concurrency: int
    report: dict[str, Any] = field(default_factory=dict)


async def run_stations(run: Run, gates: list[Gateway], pg: Cluster) -> None:
    """Boot storm, steady events, the kill and the reconnect storm, the drain and the check."""
    plan = run.plan
    urls = [g.url for g in gates]
    clients: list[StationClient] = []
    try:
        shares = plan.shares()
        clients = list(
            await asyncio.gather(
                *(
                    StationClient.start(
                        [run.credentials[i] for i in share], run.directory, c, START_TIMEOUT
                    )
                    for c, share in enumerate(shares)
                )
            )
        )
        # 1. Every station connects and boots at once.
        answers = await everyone(
            clients,
            [
                {
                    "op": "hold",
                    "urls": urls,
                    "orders": [plan.order(i) for i in share],
                    "timeout": STATION_TIMEOUT,
                    "wait": HOLD_TIMEOUT,
                }
                for share in shares
            ],
            HOLD_TIMEOUT + CLIENT_SLACK,
        )
        boot = totals(answers)
        boot_s = max(float(a["seconds"]) for a in answers)
        if boot["connected"] != plan.stations:
            raise BenchError(
                f"only {boot['connected']:,} of {plan.stations:,} stations connected within "
                f"{HOLD_TIMEOUT:g} s; failures: {boot['failures']}"
            )
        run.report["boot"] = {
            "stations": plan.stations,
            "seconds": round(boot_s, 2),
            "booted_per_s": round(plan.stations / boot_s, 1),
            "failures": boot["failures"],
            "held_per_gateway": [g.held() for g in gates],
        }

        # 2. Steady events: C in flight over all stations, the rate counted in the database.
        per_client = [max(1, round(run.concurrency * len(s) / plan.stations)) for s in shares]
        stored_before = count_events(run.db_url)
        cpu_before = [cpu_seconds(g.process.pid) for g in gates]
        started = time.perf_counter()
        await everyone(
            clients, [{"op": "send", "concurrency": n} for n in per_client], CLIENT_SLACK
        )
        await asyncio.sleep(run.seconds)  # the measurement window
        window = time.perf_counter() - started
        stored = count_events(run.db_url) - stored_before
        gateway_cpu = [
            round(cpu_seconds(g.process.pid) - b, 2) for g, b in zip(gates, cpu_before, strict=True)
        ]
        run.report["events"] = {
            "in_flight": sum(per_client),
            "seconds": round(window, 2),
            "stored": stored,
            "stored_per_s": round(stored / window, 1),
            "gateway_cpu_s": gateway_cpu,
            "gateway_cpu_ms_per_event": round(sum(gateway_cpu) * 1000 / stored, 3)
            if stored
            else None,
        }

        # 3. kill -9 of the victim while the events flow.
        victim = gates[0]
        victim_figures = {**figures(victim.process.pid), "held": victim.held()}
        drops_before = totals(
            await everyone(clients, [{"op": "status"}] * len(clients), CLIENT_SLACK)
        )["drops"]
        killed = time.perf_counter()
        victim.process.kill()
        victim.process.wait()
        lowest = plan.stations
        while True:
            status = totals(
                await everyone(clients, [{"op": "status"}] * len(clients), CLIENT_SLACK)
            )
            lowest = min(lowest, status["connected"])
            dropped = status["drops"] - drops_before
            # All back only once every station of the victim has seen its socket die: a poll
            # right after the kill may come before a station noticed (all still "connected").
            if status["connected"] == plan.stations and dropped >= victim_figures["held"]:
                back = time.perf_counter() - killed
                break
            if time.perf_counter() - killed > STORM_TIMEOUT:
                raise BenchError(
                    f"{plan.stations - status['connected']:,} stations still not connected "
                    f"{STORM_TIMEOUT:g} s after the kill; failures: {status['failures']}"
                )
            await asyncio.sleep(POLL)
        survivors = gates[1:]
        run.report["storm"] = {
            "victim": victim_figures,
            "victim_stations": victim_figures["held"],
            "seconds_until_all_back": round(back, 2),
            "lowest_connected": lowest,
            "dropped": dropped,
            "reconnected_per_s": round(victim_figures["held"] / back, 1) if back else None,
            "held_per_survivor": [g.held() for g in survivors],
        }

        # 4. Drain: no new events, every pending one resent until answered; then the check.
        drained = await everyone(
            clients,
            [{"op": "drain", "timeout": DRAIN_TIMEOUT}] * len(clients),
            DRAIN_TIMEOUT + CLIENT_SLACK,
        )
        counts = totals(drained)
        acked_upto: dict[str, int] = {}
        for answer in drained:
            acked_upto.update({str(k): int(v) for k, v in answer["acked_upto"].items()})
        rows, ids = stored_events(run.db_url)
        lost = sum(
            1
            for serial, upto in acked_upto.items()
            for n in range(1, upto + 1)
            if f"{serial}:{n}" not in ids
        )
        run.report["delivery"] = {
            "created": counts["created"],
            "acked": counts["acked"],
            "pending_after_drain": counts["pending"],
            "resent": counts["resent"],
            "stored_rows": rows,
            "stored_distinct": len(ids),
            "lost": lost,
            "duplicates": rows - len(ids),
            "connects": counts["connects"],
            "drops": counts["drops"],
            "failures": counts["failures"],
        }
        run.report["processes"] = {
            "gateways": [
                {"index": 0, "killed": True, **victim_figures},
                *(
                    {"index": g.index, "killed": False, **figures(g.process.pid), "held": g.held()}
                    for g in survivors
                ),
            ],
            "station_clients": [
                {"index": i, "stations": len(s), **figures(c.pid)}
                for i, (c, s) in enumerate(zip(clients, shares, strict=True))
            ],
        }
        if pg.own:
            tree = pg.tree()
            cpu = 0.0
            for process in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    cpu += times.user + times.system
            run.report["processes"]["postgresql"] = {
                "processes": len(tree),
                "cpu_s": round(cpu, 2),
                "postmaster_peak_rss_mib": peak_rss_mib(tree[0].pid) if tree else None,
            }
        await everyone(clients, [{"op": "release"}] * len(clients), CLIENT_SLACK)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


def _run(
    directory: Path,
    pg: Cluster,
    db_url: str,
    plan: Plan,
    chargers: int,
    seconds: float,
    concurrency: int,
    reveal_seconds: float,
    pgbench_seconds: float,
    pgbench_scale: int,
    report: dict[str, Any],
) -> None:
    vault = Vault.generate()
    report["postgresql"] = {
        "server": "own throwaway cluster, fsync on" if pg.own else "--db-url",
        "settings": server_settings(db_url),
    }
    provision_s, credentials, (serial, sticker) = provision_fleet(
        db_url, vault, chargers, plan.stations
    )
    report["provisioning"] = {
        "chargers": chargers,
        "seconds": round(provision_s, 2),
        "rows_per_s": round(chargers / provision_s, 1),
        "database_mib": database_mib(db_url, directory),
    }
    report["pgbench"] = pgbench(db_url, pgbench_seconds, pgbench_scale, directory)
    env = {ENV_KEY: vault.current.hex()}
    run = Run(directory, db_url, plan, credentials, seconds, concurrency, report)
    with ConnectionSampler(db_url) as sampler:
        with gateways(plan.gateways, db_url, env, directory) as gates:
            asyncio.run(run_stations(run, gates, pg))
        report["postgresql"]["connections_during_ocpp"] = sampler.summary()
    app_env = {"CHARGEPIN_DB_URL": db_url, ENV_KEY: vault.current.hex()}
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serve_app("fleet", "chargepin.fleet.app:create_app", app_env))
        bare = stack.enter_context(serve_app("bare", "chargepin.lab.bench_fleet:bare_app", {}))
        two = stack.enter_context(
            serve_app(
                f"fleet ({REVEAL_WORKERS} workers)",
                "chargepin.fleet.app:create_app",
                app_env,
                REVEAL_WORKERS,
            )
        )
        report["pin_reveal"] = asyncio.run(
            measure_reveal(one, bare, sticker, serial, reveal_seconds, REVEAL_CONCURRENCY, two)
        )


def check(report: dict[str, Any]) -> bool:
    """The bench's verdict: nothing lost, nothing twice, everyone back."""
    delivery = report["delivery"]
    return bool(
        delivery["lost"] == 0
        and delivery["duplicates"] == 0
        and delivery["pending_after_drain"] == 0
        and report["storm"]["dropped"] >= report["storm"]["victim_stations"]
    )


def run_bench(
    directory: Path,
    chargers: int = DEFAULT_CHARGERS,
    stations: int = DEFAULT_STATIONS,
    gateways: int = DEFAULT_GATEWAYS,
    clients: int | None = None,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    reveal_seconds: float = DEFAULT_REVEAL_SECONDS,
    pgbench_seconds: float = DEFAULT_PGBENCH_SECONDS,
    pgbench_scale: int = PGBENCH_SCALE,
    db_url: str | None = None,
    command: str = "",
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (files under `directory`)."""
    if stations < 2:
        raise ValueError(f"stations must be at least 2, got {stations}")
    if chargers < stations + 1:
        raise ValueError(
            f"chargers must be more than stations ({stations:,}): each station is a provisioned "
            "charger, and the PIN reveal uses one more"
        )
    if gateways < 2:
        raise ValueError(f"gateways must be at least 2 (one is killed), got {gateways}")
    if clients is None:
        clients = math.ceil(stations / STATIONS_PER_CLIENT)
    if not 1 <= clients <= stations:
        raise ValueError(f"clients must be 1 to {stations:,}, got {clients}")
    if not seconds > 0 or not reveal_seconds > 0 or not pgbench_seconds > 0:
        raise ValueError("seconds, reveal seconds and pgbench seconds must be more than 0")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    plan = Plan(stations, gateways, clients)
    plan.check_files(file_limit())
    started = dt.datetime.now(dt.UTC)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "file_limit": {"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "hard": file_limit()},
        "chargers": chargers,
        "stations": stations,
        "gateways": gateways,
        "station_clients": clients,
        "concurrency": concurrency,
        "seconds": seconds,
    }
    with cluster(db_url) as pg, bench_database(directory, pg.url) as database:
        _run(
            directory,
            pg,
            database,
            plan,
            chargers,
            seconds,
            concurrency,
            reveal_seconds,
            pgbench_seconds,
            pgbench_scale,
            report,
        )
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report["pass"] = check(report)
    report["duration_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    return report


# ---------------------------------------------------------------- report


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"chargepin bench fleet-scale ({report['postgresql']['server']})")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    p = report["provisioning"]
    table.add_row(
        f"provision {p['chargers']:,} chargers", f"{p['seconds']:.1f} s ({p['rows_per_s']:,.0f}/s)"
    )
    pg = report["pgbench"]
    table.add_row("pgbench simple-update", f"{pg['simple_update']['tps']:,.0f} tps")
    table.add_row("pgbench event insert (1 per commit)", f"{pg['event_insert']['tps']:,.0f} tps")
    b = report["boot"]
    table.add_row(
        f"boot {b['stations']:,} stations on {report['gateways']} gateways",
        f"{b['seconds']:.1f} s ({b['booted_per_s']:,.0f}/s)",
    )
    table.add_row("  held per gateway", ", ".join(f"{n:,}" for n in b["held_per_gateway"]))
    e = report["events"]
    table.add_row(f"events stored, {e['in_flight']} in flight", f"{e['stored_per_s']:,.0f}/s")
    s = report["storm"]
    table.add_row(
        f"kill -9 of a gateway holding {s['victim_stations']:,}: all back after",
        f"{s['seconds_until_all_back']:.1f} s",
    )
    table.add_row("  held per survivor", ", ".join(f"{n:,}" for n in s["held_per_survivor"]))
    d = report["delivery"]
    table.add_row(
        "events acked / stored / lost / twice",
        f"{d['acked']:,} / {d['stored_distinct']:,} / {d['lost']} / {d['duplicates']}",
    )
    r = report["pin_reveal"]
    table.add_row("PIN reveal, 1 worker", f"{r['reveal']['requests_per_s']:,.0f}/s")
    table.add_row(
        f"PIN reveal, {REVEAL_WORKERS} workers", f"{r['reveal_workers']['requests_per_s']:,.0f}/s"
    )
    table.add_row(f"  {REVEAL_WORKERS} workers / 1", f"{r['workers_to_one_ratio']:.2f}")
    table.add_row("verdict (lost 0, twice 0, all back)", "pass" if report["pass"] else "FAIL")
    return table


def command_line(json_path: Path | None, **options: Any) -> str:
    """The CLI command that reproduces a run (the URL without its password)."""
    parts = ["chargepin bench fleet-scale"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    for name, value in options.items():
        if value is None:
            continue
        if name == "db_url":
            value = make_url(value).render_as_string(hide_password=True)
        parts.append(
            f"--{name.replace('_', '-')} {value:g}"
            if isinstance(value, float)
            else f"--{name.replace('_', '-')} {value}"
        )
    return " ".join(parts)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_fleet_scale_bench(
    json_path: Path | None,
    chargers: int = DEFAULT_CHARGERS,
    stations: int = DEFAULT_STATIONS,
    gateways: int = DEFAULT_GATEWAYS,
    clients: int | None = None,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    reveal_seconds: float = DEFAULT_REVEAL_SECONDS,
    pgbench_seconds: float = DEFAULT_PGBENCH_SECONDS,
    pgbench_scale: int = PGBENCH_SCALE,
    db_url: str | None = None,
) -> int:
    """Run the bench, print a short table, write the JSON; the exit code (0 pass, 1 an event
    lost or stored twice, 2 the bench could not measure). SIGTERM is taken like Ctrl-C, so
    that every child is stopped on the way out."""
    command = command_line(
        json_path,
        chargers=chargers,
        stations=stations,
        gateways=gateways,
        clients=clients,
        seconds=seconds,
        concurrency=concurrency,
        reveal_seconds=reveal_seconds,
        pgbench_seconds=pgbench_seconds,
        pgbench_scale=pgbench_scale,
        db_url=db_url,
    )

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-fleet-scale-") as tmp:
            return run_bench(
                Path(tmp),
                chargers,
                stations,
                gateways,
                clients,
                seconds,
                concurrency,
                reveal_seconds,
                pgbench_seconds,
                pgbench_scale,
                db_url=db_url,
                command=command,
            )

    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        return report_bench(
            measure,
            (ChargepinError, ValueError, ClientError, httpx.HTTPError, psutil.Error),
            report_table,
            json_path,
            lambda report: bool(report["pass"]),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
