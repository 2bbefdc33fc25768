"""`chargepin bench ocpp`: N stations against the fleet's CSMS and a bare one, side by side.

Issue 10's proof, measured on loopback with every party in its own process:

- the fleet's CSMS as operators run it, `chargepin fleet serve` (uvicorn, one process) on a
  SQLite file holding N provisioned chargers;
- the baseline, `bench_ocpp_bare`: the `ocpp` package's ChargePoint on `websockets.serve`,
  accepting anyone and answering constants;
- N light stations (`ocpp_stations`) spread over a few client processes. Each holds two
  connections, one to each server, with its real serial and derived CSMS password.

For each server: its RSS (/proc/PID/status VmRSS) before and after all N connections, the
connections it holds (its established sockets, counted by the kernel), and the boot storm: all
N connect and have BootNotification accepted at once, booted stations per second, and how long
the server stays busy after the last boot was answered (nothing is measured until it is quiet). Then
SecurityEventNotification round trips, one event in flight (the latency of an idle server), and
throughput with a fixed number in flight, in alternating slices (fleet, bare, fleet, bare...)
so that both servers see the same machine load. Targets: <= 100 KiB of server RSS per
connection, event throughput >= 0.5 of the bare CSMS's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from rich.table import Table

from chargepin.core.csms_auth import csms_password
from chargepin.core.errors import ChargepinError
from chargepin.fleet import factory
from chargepin.fleet.db import transaction
from chargepin.fleet.operations import open_database
from chargepin.fleet.vault import ENV_KEY, Vault
from chargepin.lab.bench import DIGITS_MS, percentile, report_bench
from chargepin.lab.bench import machine_info as base_machine_info
from chargepin.lab.bench_fleet import FIRMWARE, MODEL, PRODUCED, count_rows
from chargepin.lab.ocpp_stations import ClientError, StationClient, everyone, split
from chargepin.lab.ports import LOOPBACK, free_port

DEFAULT_STATIONS = 5_000
DEFAULT_SECONDS = 4.0
DEFAULT_CONCURRENCY = 32
DEFAULT_CLIENTS = 2

RSS_TARGET_KIB = 100.0
"""Acceptance: server RSS per held connection (after the storm minus before it), KiB."""
STATIONS_TARGET = 5_000
"""Acceptance: stations held by one server process."""
RATIO_TARGET = 0.5
"""Acceptance: the fleet's events/s divided by the bare CSMS's, same load, same machine."""

SLICES = 4
"""Alternating slices per arm and phase: a neighbour's burst lands in both arms."""
WARMUP_STATIONS = 4
"""Stations per client process that connect, send events and hang up before anything is
measured: imports, schema loading, thread pool and SQLite page cache are not per-connection."""
WARMUP_S = 0.3
STATION_TIMEOUT = 120.0
"""Seconds one station may wait for its connection, its boot or one answer (a storm of
thousands on two shared cores takes a while)."""
START_TIMEOUT = 60.0
SETTLE_WINDOW = 0.25
QUIET_SHARE = 0.05
"""A server using under 5 % of a core over SETTLE_WINDOW is quiet (5,000 idle connections
cost it about 1 %: WebSocket pings every 20 s)."""
SETTLE_TIMEOUT = 120.0
CLIENT_SLACK = 60.0
"""What a client process gets beyond the station timeout to answer a command."""


class BenchError(ChargepinError):
    """The bench could not measure (a server did not start, a client died, a check failed)."""


# ---------------------------------------------------------------- provisioning


def provision(db_url: str, vault: Vault, count: int) -> tuple[float, list[tuple[str, str]]]:
    """`count` chargers in one transaction (the factory's path); seconds and each one's serial
    and derived CSMS password."""
    engine, sessions = open_database(db_url)
    try:
        started = time.perf_counter()
        with transaction(sessions) as db:
            made = factory.provision(
                db, vault, count=count, model=MODEL, firmware=FIRMWARE, produced=PRODUCED
            )
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return seconds, [(c.serial, csms_password(c.secret, c.serial)) for c in made]


# ---------------------------------------------------------------- servers


@dataclass
class CsmsServer:
    """One CSMS in its own process on loopback: where stations connect, and what it costs."""

    name: str
    port: int
    command: list[str]
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/ocpp/"

    def rss_kib(self) -> int:
        """VmRSS from /proc/PID/status, KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"no VmRSS for the {self.name} server (pid {self.process.pid})")

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def held(self) -> int:
        """Established TCP connections on its port, as the kernel counts them."""
        return sum(
            1
            for c in psutil.Process(self.process.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
        )

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        """Until the port accepts a connection (bounded), or BenchError with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=1.0),
            ):
                return
            time.sleep(0.05)
        raise BenchError(
            f"the {self.name} CSMS did not start (exit code {self.process.poll()}); run "
            f"`{' '.join(self.command)}` to see why; its log:\n"
            + self.log.read_text(errors="replace")[-2000:]
        )


@contextlib.contextmanager
def serve(
    name: str, args: Sequence[str], port: int, env: dict[str, str], directory: Path
) -> Iterator[CsmsServer]:
    """Run `python -m ARGS` until the block ends; its output goes to a log file."""
    command = [sys.executable, "-m", *args]
    log = directory / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = CsmsServer(name, port, command, process, log)
    try:
        server.wait_listening()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fleet_command(db_url: str, port: int) -> list[str]:
    """`chargepin fleet serve` as an operator runs it (uvicorn, one process)."""
    return ["chargepin.cli", "fleet", "serve", "--db", db_url, "--port", str(port)]


# ---------------------------------------------------------------- measurements


def latency_summary(samples: Sequence[float]) -> dict[str, float | int] | None:
    """p50 and p99 (nearest rank) with mean, min, max and count; None without samples."""
    if not samples:
        return None
    return {
        "p50": round(percentile(samples, 0.5), DIGITS_MS),
        "p99": round(percentile(samples, 0.99), DIGITS_MS),
        "mean": round(statistics.fmean(samples), DIGITS_MS),
        "min": round(min(samples), DIGITS_MS),
        "max": round(max(samples), DIGITS_MS),
        "n": len(samples),
    }


def merge_errors(answers: Sequence[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for answer in answers:
        for name, count in answer["errors"].items():
            total[name] = total.get(name, 0) + int(count)
    return total


@dataclass
class Phase:
    """Events sent to one server in one phase, over all its slices."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        n = len(self.latencies_ms)
        return {
            "events": n,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(n / self.seconds, 1) if self.seconds > 0 else 0.0,
            "latency_ms": latency_summary(self.latencies_ms),
            "server_cpu_ms_per_event": round(self.cpu_seconds * 1000.0 / n, 3) if n else None,
            "errors": self.errors,
        }


@dataclass
class Arm:
    """One CSMS under the same workload as the other."""

    server: CsmsServer
    description: str
    report: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.server.name


def share(total: int, parts: int) -> list[int]:
    """`total` split over `parts` (sizes differ by at most one, the first ones larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def events_slice(
    clients: Sequence[StationClient], arm: Arm, phase: str, seconds: float, concurrency: int
) -> None:
    """`concurrency` events in flight for `seconds`, spread over the client processes."""
    server = arm.server
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client.send(
                {
                    "op": "events",
                    "arm": arm.name,
                    "seconds": seconds,
                    "concurrency": c,
                    "timeout": STATION_TIMEOUT,
                }
            )
            for client, c in zip(clients, share(concurrency, len(clients)), strict=True)
        )
    )
    answers = await asyncio.gather(
        *(c.answer(seconds + STATION_TIMEOUT + CLIENT_SLACK) for c in clients)
    )
    elapsed = time.perf_counter() - started
    record = arm.phases.setdefault(phase, Phase())
    record.seconds += elapsed
    record.cpu_seconds += server.cpu_seconds() - cpu
    for answer in answers:
        record.latencies_ms.extend(answer["latencies_ms"])
    for name, count in merge_errors(answers).items():
        record.errors[name] = record.errors.get(name, 0) + count


async def warm_up(clients: Sequence[StationClient], arm: Arm) -> None:
    """A few stations connect, send events for a moment and hang up (nothing measured)."""
    name = f"{arm.name}-warmup"
    connect = {
        "op": "connect",
        "arm": name,
        "url": arm.server.url,
        "count": WARMUP_STATIONS,
        "timeout": STATION_TIMEOUT,
    }
    answers = await everyone(clients, connect, STATION_TIMEOUT + CLIENT_SLACK)
    if errors := merge_errors(answers):
        raise BenchError(f"the {arm.name} CSMS refused the warm-up stations: {errors}")
    events = {
        "op": "events",
        "arm": name,
        "seconds": WARMUP_S,
        "concurrency": WARMUP_STATIONS,
        "timeout": STATION_TIMEOUT,
    }
    await everyone(clients, events, WARMUP_S + STATION_TIMEOUT + CLIENT_SLACK)
    await everyone(clients, {"op": "close", "arm": name}, CLIENT_SLACK)


async def settle(server: CsmsServer) -> tuple[float, float]:
    """Until the server is quiet (under QUIET_SHARE of a core over a SETTLE_WINDOW), bounded by
    SETTLE_TIMEOUT: the work a storm leaves behind once every boot is answered must not land in
    the next measurement. Seconds it took and the server's CPU seconds meanwhile."""
    started = time.perf_counter()
    first = last = server.cpu_seconds()
    while time.perf_counter() - started < SETTLE_TIMEOUT:
        await asyncio.sleep(SETTLE_WINDOW)
        now = server.cpu_seconds()
        if now - last < QUIET_SHARE * SETTLE_WINDOW:
            return time.perf_counter() - started - SETTLE_WINDOW, last - first
        last = now
    raise BenchError(f"the {server.name} CSMS was still busy {SETTLE_TIMEOUT:g} s after the storm")


async def storm(clients: Sequence[StationClient], arm: Arm, stations: int) -> None:
    """All N stations connect and boot at once; the server's RSS before and after, the
    connections it holds, booted stations per second and each one's connect + boot time."""
    server = arm.server
    await warm_up(clients, arm)
    rss_before = server.rss_kib()
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    connect = {"op": "connect", "arm": arm.name, "url": server.url, "timeout": STATION_TIMEOUT}
    answers = await everyone(clients, connect, STATION_TIMEOUT * 2 + CLIENT_SLACK)
    seconds = time.perf_counter() - started
    cpu_seconds = server.cpu_seconds() - cpu
    booted = sum(int(a["booted"]) for a in answers)
    settle_s, settle_cpu = await settle(server)
    rss_after = server.rss_kib()
    held = server.held()
    latencies = [ms for a in answers for ms in a["latencies_ms"]]
    arm.report["websocket_extensions"] = sorted({e for a in answers for e in a["extensions"]})
    arm.report["storm"] = {
        "stations": stations,
        "booted": booted,
        "errors": merge_errors(answers),
        "seconds": round(seconds, 3),
        "booted_per_s": round(booted / seconds, 1),
        "connect_and_boot_ms": latency_summary(latencies),
        "server_cpu_ms_per_station": round(cpu_seconds * 1000.0 / booted, 3) if booted else None,
        "settle_s": round(settle_s, 3),
        "server_cpu_ms_per_station_after_boot": (
            round(settle_cpu * 1000.0 / booted, 3) if booted else None
        ),
    }
    arm.report["memory"] = {
        "connections_held": held,
        "rss_kib": {"before": rss_before, "after_storm": rss_after},
        "per_connection_kib": round((rss_after - rss_before) / held, 1) if held else None,
    }


async def measure(
    servers: Sequence[Arm],
    credentials: Sequence[tuple[str, str]],
    directory: Path,
    seconds: float,
    concurrency: int,
    clients_count: int,
) -> None:
    """The whole workload against every arm, storms first, then alternating event slices."""
    clients: list[StationClient] = []
    try:
        for index, mine in enumerate(split(credentials, clients_count)):
            clients.append(await StationClient.start(mine, directory, index, START_TIMEOUT))
        for arm in servers:
            await storm(clients, arm, len(credentials))
        for arm in servers:  # unmeasured: the first events of each connection
            await events_slice(clients, arm, "warmup", WARMUP_S, concurrency)
        for phase, in_flight in (("round_trip", 1), ("throughput", concurrency)):
            for _ in range(SLICES):
                for arm in servers:
                    await events_slice(clients, arm, phase, seconds / SLICES, in_flight)
        for arm in servers:
            arm.report["memory"]["rss_kib"]["after_events"] = arm.server.rss_kib()
            arm.report["memory"]["connections_held_after_events"] = arm.server.held()
            await everyone(clients, {"op": "close", "arm": arm.name}, STATION_TIMEOUT)
            arm.report["memory"]["rss_kib"]["after_close"] = arm.server.rss_kib()
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


# ---------------------------------------------------------------- report


def machine_info(directory: Path) -> dict[str, Any]:
    info = base_machine_info(directory)
    for package in ("ocpp", "websockets", "uvicorn", "starlette", "sqlalchemy"):
        info[package] = metadata.version(package)
    with contextlib.suppress(OSError, ValueError):
        import resource

        info["open_files_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return info


def command_line(
    json_path: Path | None, stations: int, seconds: float, concurrency: int, clients: int
) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = ["chargepin bench ocpp"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(
        f"--stations {stations} --seconds {seconds:g} --concurrency {concurrency} "
        f"--clients {clients}"
    )
    return " ".join(parts)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 3)


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value it is judged on (the report never contradicts
    itself: the verdict is on the rounded, reported value)."""
    fleet = report["arms"]["fleet"]
    stations = report["stations"]
    per_kib = fleet["memory"]["per_connection_kib"]
    ratio = report["ratios"]["throughput"]
    return {
        "all_booted": {
            "value": fleet["storm"]["booted"],
            "target": stations,
            "pass": fleet["storm"]["booted"] == stations
            and fleet["memory"]["connections_held"] >= stations,
        },
        "rss_per_connection_kib": {
            "value": per_kib,
            "target": RSS_TARGET_KIB,
            "pass": per_kib is not None and per_kib <= RSS_TARGET_KIB,
        },
        "throughput_ratio": {
            "value": ratio,
            "target": RATIO_TARGET,
            "pass": ratio is not None and ratio >= RATIO_TARGET,
        },
        "at_target_scale": {
            "value": stations,
            "target": STATIONS_TARGET,
            "pass": stations >= STATIONS_TARGET,
        },
    }


def run_bench(
    directory: Path,
    stations: int,
    seconds: float,
    concurrency: int,
    clients: int,
    command: str = "",
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; the database and logs live under `directory`."""
    if stations < 1:
        raise ValueError(f"stations must be at least 1, got {stations}")
    if not seconds > 0:
        raise ValueError(f"seconds must be more than 0, got {seconds}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not 1 <= clients <= stations:
        raise ValueError(f"clients must be 1 to the number of stations, got {clients}")
    started = dt.datetime.now(dt.UTC)
    db_url = f"sqlite:///{directory / 'fleet.db'}"
    vault = Vault.generate()
    provision_s, credentials = provision(db_url, vault, stations)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(directory),
        "stations": stations,
        "clients": clients,
        "concurrency": concurrency,
        "seconds_per_phase": seconds,
        "slices_per_phase": SLICES,
        "provisioning_s": round(provision_s, 3),
    }
    fleet_port, bare_port = free_port(), free_port()
    with (
        serve(
            "fleet",
            fleet_command(db_url, fleet_port),
            fleet_port,
            {ENV_KEY: vault.current.hex()},
            directory,
        ) as fleet,
        serve(
            "bare", ["chargepin.lab.bench_ocpp_bare", str(bare_port)], bare_port, {}, directory
        ) as bare,
    ):
        arms = [
            Arm(fleet, "chargepin fleet serve: uvicorn, one process, SQLite"),
            Arm(bare, "ocpp package ChargePoint on websockets.serve, constant answers"),
        ]
        asyncio.run(measure(arms, credentials, directory, seconds, concurrency, clients))
    report["arms"] = {}
    for arm in arms:
        arm.report["server"] = arm.description
        for phase in ("round_trip", "throughput"):
            arm.report[phase] = arm.phases[phase].summary()
        report["arms"][arm.name] = arm.report
    ours, theirs = report["arms"]["fleet"], report["arms"]["bare"]
    answered = ours["round_trip"]["events"] + ours["throughput"]["events"]
    stored = count_rows(db_url, "station_security_events")
    report["fleet_events"] = {"answered_measured": answered, "stored_in_all": stored}
    if stored < answered:
        raise BenchError(f"the fleet answered {answered} events but stored only {stored}")

    def p50(arm: dict[str, Any]) -> float | None:
        latency = arm["round_trip"]["latency_ms"]
        return None if latency is None else float(latency["p50"])

    report["ratios"] = {
        "throughput": _ratio(
            ours["throughput"]["events_per_s"], theirs["throughput"]["events_per_s"]
        ),
        "round_trip_p50": _ratio(p50(ours), p50(theirs)),
        "boot_storm_rate": _ratio(ours["storm"]["booted_per_s"], theirs["storm"]["booted_per_s"]),
        "rss_per_connection": _ratio(
            ours["memory"]["per_connection_kib"], theirs["memory"]["per_connection_kib"]
        ),
    }
    report["targets"] = verdicts(report)
    report["pass"] = all(v["pass"] for k, v in report["targets"].items() if k != "at_target_scale")
    report["duration_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    return report


def _verdict(passed: bool) -> str:
    return "pass" if passed else "MISS"


def _ms(latency: dict[str, Any] | None, key: str) -> str:
    return "-" if latency is None else f"{latency[key]:.2f}"


def report_table(report: dict[str, Any]) -> Table:
    """The short human summary the CLI prints."""
    table = Table(title=f"chargepin bench ocpp: {report['stations']:,} stations")
    table.add_column("measurement")
    for name in ("fleet CSMS", "bare ocpp CSMS", "fleet / bare"):
        table.add_column(name, justify="right")
    fleet, bare = report["arms"]["fleet"], report["arms"]["bare"]
    ratios, targets = report["ratios"], report["targets"]

    def row(label: str, values: tuple[str, str], ratio: float | None) -> None:
        table.add_row(label, *values, "-" if ratio is None else f"{ratio:.2f}")

    def both(pick: Any) -> tuple[str, str]:
        return pick(fleet), pick(bare)

    row("connections held", both(lambda a: f"{a['memory']['connections_held']:,}"), None)
    row(
        f"RSS per connection, KiB (<= {RSS_TARGET_KIB:g}: "
        f"{_verdict(targets['rss_per_connection_kib']['pass'])})",
        both(lambda a: f"{a['memory']['per_connection_kib']}"),
        ratios["rss_per_connection"],
    )
    row(
        "boot storm, booted/s",
        both(lambda a: f"{a['storm']['booted_per_s']:,.0f}"),
        ratios["boot_storm_rate"],
    )
    row(
        "  connect + boot p50 / p99 ms",
        both(
            lambda a: (
                f"{_ms(a['storm']['connect_and_boot_ms'], 'p50')} / "
                f"{_ms(a['storm']['connect_and_boot_ms'], 'p99')}"
            )
        ),
        None,
    )
    row(
        "  busy after the last boot, s",
        both(lambda a: f"{a['storm']['settle_s']:.1f}"),
        None,
    )
    row(
        "event round trip p50 / p99 ms (1 in flight)",
        both(
            lambda a: (
                f"{_ms(a['round_trip']['latency_ms'], 'p50')} / "
                f"{_ms(a['round_trip']['latency_ms'], 'p99')}"
            )
        ),
        ratios["round_trip_p50"],
    )
    row(
        f"events/s, {report['concurrency']} in flight (>= {RATIO_TARGET:g}: "
        f"{_verdict(targets['throughput_ratio']['pass'])})",
        both(lambda a: f"{a['throughput']['events_per_s']:,.0f}"),
        ratios["throughput"],
    )
    row(
        "  server CPU ms per event",
        both(lambda a: f"{a['throughput']['server_cpu_ms_per_event']}"),
        None,
    )
    return table


def run_ocpp_bench(
    json_path: Path | None,
    stations: int = DEFAULT_STATIONS,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    clients: int = DEFAULT_CLIENTS,
) -> int:
    """Run the bench, print a short table, write the JSON report; the exit code.

    0 when the targets are met, 1 when one is missed, 2 when the bench could not measure (the
    message says why).
    """
    command = command_line(json_path, stations, seconds, concurrency, clients)

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-ocpp-") as tmp:
            return run_bench(Path(tmp), stations, seconds, concurrency, clients, command)

    return report_bench(
        measure,
        (ChargepinError, ClientError, ValueError, OSError, psutil.Error),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
