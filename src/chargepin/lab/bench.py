"""`chargepin bench pairing`: what PIN pairing through the daemon costs, next to bare Bumble.

Three numbers back the performance claims in docs/PERFORMANCE.md:

1. Pairing. The same LE Secure Connections passkey-entry pairing, timed from the central's
   `pair()` call to its return, once through chargepin (the daemon with its SQLite state and the
   phone client) and once between two plain Bumble devices showing the same static passkey. The
   rounds alternate A, B, A, B on one event loop, so both arms see the same machine load, and the
   result is a ratio of medians: on a shared machine absolute times drift, ratios measured side
   by side do not (much).
2. Bonded reconnect: a phone that already holds a bond, from the start of the connection (after
   the scan) to the first protected read answered (the charging status).
3. Memory: the RSS of a daemon running in its own process, as a charger would, after it started,
   after 10 pairings and every tenth of the run up to 100 pairings.

The timed windows are found by wrapping the real calls (`CallTimer`), not by copying the phone's
connect logic here, so the bench measures the code users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from bumble import hci
from bumble.keys import PairingKeys
from rich.console import Console
from rich.table import Table

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core.addresses import random_static_address
from chargepin.core.errors import ChargepinError
from chargepin.core.pin import Pin
from chargepin.core.profiles import DEFAULT_PROFILE
from chargepin.lab.bench_bare import BarePair, disconnect_both
from chargepin.lab.bench_daemon import READY
from chargepin.lab.ports import free_ports
from chargepin.lab.testbed import ChargerSpec, Testbed, provision
from chargepin.phone.client import Phone
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file
from chargepin.radio.transport import open_hci
from chargepin.radio.virtual import serve_radio

RATIO_TARGET = 1.05
"""Acceptance: median chargepin pairing time / median bare Bumble pairing time (issue 13)."""

GROWTH_POINTS = (1, 10, 100, 1000)
"""Bonds on the charger at each point of `--bonds`' curve (issue 13: flat from 1 to 1,000)."""

DEFAULT_ROUNDS = 30
DEFAULT_RSS_PAIRINGS = 100

RSS_CHECKPOINT = 10
"""Pairings after which the daemon's RSS is sampled once more: growth after this is steady state."""

PROFILE = DEFAULT_PROFILE
"""The shipped default profile; a successful pairing costs the same in the others."""

CHILD_START_TIMEOUT = 30.0
"""Seconds the daemon child may take to import Bumble, open its state and advertise."""

PAIRING_TIMEOUT = 10.0

SETTLE = 0.02
"""Seconds of idle after each round, so that one arm's leftovers (the daemon restarting its
advertising after a disconnection, Bumble's session clean-up) never land in the other arm's
timed window."""


class BenchError(ChargepinError):
    """The bench could not measure what it claims to (a round that did not pair, a dead child)."""


# ---------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was actually measured, never interpolated."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


DIGITS_MS = 3
"""Decimals of the durations in milliseconds: microseconds, so that no step that ran is
reported as taking 0 ms however fast the machine."""


@dataclass(frozen=True)
class Summary:
    """Median and p90 of some durations in milliseconds (medians resist a noisy neighbour)."""

    median: float
    p90: float
    n: int
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(
            median=statistics.median(samples),
            p90=percentile(samples, 0.9),
            n=len(samples),
            min=min(samples),
            max=max(samples),
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "median": round(self.median, DIGITS_MS),
            "p90": round(self.p90, DIGITS_MS),
            "n": self.n,
            "min": round(self.min, DIGITS_MS),
            "max": round(self.max, DIGITS_MS),
        }


def _ms(seconds: float) -> float:
    return seconds * 1000.0


class CallTimer:
    """Times every call of one async method of one object, by wrapping it on that instance.

    How the bench times exactly the central's `pair()` inside `Phone.connect` (and the scan
    inside it) without copying the phone's connect logic here: what is timed is the real path.
    """

    def __init__(self, owner: object, name: str) -> None:
        self.started = self.ended = 0.0
        self.cpu_started = self.cpu_ended = 0.0
        original: Callable[..., Awaitable[Any]] = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                self.ended, self.cpu_ended = time.perf_counter(), time.process_time()

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.started = self.ended = 0.0
        self.cpu_started = self.cpu_ended = 0.0

    @property
    def cpu(self) -> float:
        """CPU seconds of this process during the last call (both stacks share the process)."""
        self.last  # noqa: B018  (raises if the step did not run)
        return self.cpu_ended - self.cpu_started

    @property
    def last(self) -> float:
        """Seconds the last call took; raises if the method was not called since `reset`."""
        if not self.ended:
            raise BenchError("the timed step did not run (the phone took another path)")
        return self.ended - self.started


# ---------------------------------------------------------------- in-process arms


class Samples:
    """Named series of durations, collected in seconds and reported in milliseconds."""

    def __init__(self) -> None:
        self._series: dict[str, list[float]] = {}

    def add(self, durations: dict[str, float]) -> None:
        for name, seconds in durations.items():
            self._series.setdefault(name, []).append(_ms(seconds))

    def ms(self, name: str) -> list[float]:
        return self._series[name]

    def summary(self, name: str) -> dict[str, float | int]:
        return Summary.of(self._series[name]).to_dict()


@dataclass
class _ChargepinArm:
    """A: the daemon and the phone client on one virtual radio, as the product runs them."""

    daemon: ChargerDaemon
    phone: Phone
    pin: Pin
    find: CallTimer
    link: CallTimer
    pair: CallTimer
    encrypt: CallTimer
    filler: set[str] = field(default_factory=set)
    """Bonds of phones that never connect, stored to see what the number of bonds costs."""

    @classmethod
    async def start(cls, bed: Testbed, *, privacy: bool = False) -> _ChargepinArm:
        daemon = await bed.charger(ChargerSpec(profile=PROFILE))
        phone = await bed.phone(pairing_timeout=PAIRING_TIMEOUT, privacy=privacy)
        # Connection.pair() and .encrypt() call these Device methods: the bare arm times the
        # same calls, so both arms time the same thing.
        return cls(
            daemon,
            phone,
            daemon.store.current_pin(),
            find=CallTimer(phone, "find"),
            link=CallTimer(phone.device, "connect"),
            pair=CallTimer(phone.device, "pair"),
            encrypt=CallTimer(phone.device, "encrypt"),
        )

    def _reset(self) -> None:
        for timer in (self.find, self.link, self.pair, self.encrypt):
            timer.reset()

    async def pairing_round(self) -> dict[str, float]:
        """One first-time pairing through Phone.connect, timed step by step (seconds)."""
        self._reset()
        start = time.perf_counter()
        link = await self.phone.connect(self.daemon.address, self.pin)
        whole = time.perf_counter() - start
        if not link.paired_now:
            raise BenchError("the phone reconnected with an old bond instead of pairing")
        await disconnect_both(link.connection, self.daemon.device)
        await self.forget()
        await asyncio.sleep(SETTLE)
        return {"pair": self.pair.last, "scan": self.find.last, "phone_connect": whole}

    async def forget(self) -> None:
        """Delete the bond on both sides, so the next round is a full pairing again."""
        for name, _keys in await self.daemon.store.keystore.get_all():
            if name not in self.filler:
                await self.daemon.store.keystore.delete(name)
        await self.phone.bonds.delete(self.daemon.address)

    async def fill(self, bonds: int) -> None:
        """Store bonds of other phones until the charger holds `bonds` with the next pairing's."""
        store = self.daemon.store
        with store.transaction():
            while len(self.filler) < bonds - 1:
                address = str(random_static_address())
                await store.keystore.update(address, _other_phone_keys())
                self.filler.add(address)

    async def reconnect_round(self) -> dict[str, float]:
        """One bonded reconnect through Phone.connect and a status read (seconds)."""
        self._reset()
        start = time.perf_counter()
        link = await self.phone.connect(self.daemon.address)
        await link.status()
        read, cpu_read = time.perf_counter(), time.process_time()
        if link.paired_now:
            raise BenchError("the phone paired again instead of reconnecting with its bond")
        await disconnect_both(link.connection, self.daemon.device)
        await asyncio.sleep(SETTLE)
        connect_to_read = read - self.find.ended
        return {
            "connect_to_read": connect_to_read,
            # What chargepin adds: the window without the link-layer connect and encryption.
            "chargepin": connect_to_read - self.link.last - self.encrypt.last,
            "chargepin_cpu": cpu_read - self.find.cpu_ended - self.link.cpu - self.encrypt.cpu,
            "scan": self.find.last,
            "scan_connect_read": read - start,
            "link": self.link.last,
            "encrypt": self.encrypt.last,
        }


def _other_phone_keys() -> PairingKeys:
    """A bond as a passkey pairing leaves it (LTK, the phone's IRK), with random keys."""
    return PairingKeys(
        address_type=hci.AddressType.RANDOM_DEVICE,
        ltk=PairingKeys.Key(os.urandom(16), authenticated=True),
        irk=PairingKeys.Key(os.urandom(16)),
    )


class _BareArm:
    """B: the same steps between two plain Bumble devices (see bench_bare)."""

    def __init__(self, passkey: int) -> None:
        self.pair = BarePair(passkey)
        self.link = CallTimer(self.pair.central, "connect")

    async def pairing_round(self) -> dict[str, float]:
        connection = await self.pair.connect()
        start = time.perf_counter()
        await self.pair.pair(connection)
        elapsed = time.perf_counter() - start
        await self.pair.disconnect_and_forget(connection)
        await asyncio.sleep(SETTLE)
        return {"pair": elapsed}

    async def bond(self) -> None:
        """Pair once and keep the keys, for the reconnect rounds."""
        connection = await self.pair.connect()
        await self.pair.pair(connection)
        await disconnect_both(connection, self.pair.peripheral)
        await asyncio.sleep(SETTLE)

    async def reconnect_round(self) -> dict[str, float]:
        """Bonded: connect (after hearing an advert) and encrypt with the stored LTK."""
        self.link.reset()
        connection = await self.pair.connect()
        start = time.perf_counter()
        await asyncio.wait_for(connection.encrypt(), PAIRING_TIMEOUT)
        encrypt = time.perf_counter() - start
        await disconnect_both(connection, self.pair.peripheral)
        await asyncio.sleep(SETTLE)
        return {"link": self.link.last, "encrypt": encrypt}


def _ratios(ours: Samples, theirs: Samples) -> tuple[float, float]:
    """(median A / median B, median of the per-round A/B) of the pairing samples."""
    chargepin, baseline = ours.ms("pair"), theirs.ms("pair")
    ratio = round(statistics.median(chargepin) / statistics.median(baseline), 3)
    paired = statistics.median(a / b for a, b in zip(chargepin, baseline, strict=True))
    return ratio, round(paired, 3)


async def measure_growth(
    arm: _ChargepinArm, bare: _BareArm, rounds: int, points: Sequence[int]
) -> list[dict[str, Any]]:
    """Pairing with 1, 10, ... bonds on the charger: each point's rounds interleaved with bare
    Bumble's (whose cost does not depend on the charger's bonds), so each point has its ratio."""
    series = []
    for bonds in points:
        await arm.fill(bonds)
        ours, theirs = Samples(), Samples()
        for _ in range(rounds):
            ours.add(await arm.pairing_round())
            theirs.add(await bare.pairing_round())
        ratio, paired = _ratios(ours, theirs)
        series.append(
            {
                "bonds": bonds,
                "chargepin_ms": ours.summary("pair"),
                "bare_bumble_ms": theirs.summary("pair"),
                "ratio_median": ratio,
                "ratio_paired_median": paired,
            }
        )
    return series


async def measure_pairing(
    directory: Path, rounds: int, growth: Sequence[int] = ()
) -> dict[str, Any]:
    """Pairing (A vs B, interleaved) and bonded reconnect (likewise), all in this process; with
    `growth`, then the pairing at each of those numbers of bonds on the charger."""
    bed = Testbed(directory)
    bare: _BareArm | None = None
    ours, theirs = Samples(), Samples()
    reconnect, bare_reconnect = Samples(), Samples()
    try:
        arm = await _ChargepinArm.start(bed)
        bare = _BareArm(arm.pin.passkey)
        await bare.pair.start()
        # One unmeasured round each: first use pays imports, key generation and caches.
        await arm.pairing_round()
        await bare.pairing_round()
        for _ in range(rounds):
            ours.add(await arm.pairing_round())
            theirs.add(await bare.pairing_round())

        # Bonded reconnect: pair once, keep the bond, reconnect `rounds` times.
        link = await arm.phone.connect(arm.daemon.address, arm.pin)
        await disconnect_both(link.connection, arm.daemon.device)
        await asyncio.sleep(SETTLE)
        await bare.bond()
        await arm.reconnect_round()
        await bare.reconnect_round()
        for _ in range(rounds):
            reconnect.add(await arm.reconnect_round())
            bare_reconnect.add(await bare.reconnect_round())
        await arm.forget()
        series = await measure_growth(arm, bare, rounds, growth)
    finally:
        if bare is not None:
            await bare.pair.stop()
        await bed.close()

    chargepin, baseline = ours.ms("pair"), theirs.ms("pair")
    # The verdict is on the reported value, so that the report never contradicts itself.
    ratio, paired = _ratios(ours, theirs)
    return {
        "pairing": {
            "chargepin_ms": ours.summary("pair"),
            "bare_bumble_ms": theirs.summary("pair"),
            "ratio_median": ratio,
            "ratio_paired_median": paired,
            "target": RATIO_TARGET,
            "pass": ratio <= RATIO_TARGET,
            "chargepin_scan_ms": ours.summary("scan"),
            "chargepin_connect_ms": ours.summary("phone_connect"),
            "samples_ms": {
                "chargepin": [round(value, DIGITS_MS) for value in chargepin],
                "bare_bumble": [round(value, DIGITS_MS) for value in baseline],
            },
        },
        "bonded_reconnect_ms": {
            "connect_to_read": reconnect.summary("connect_to_read"),
            "chargepin": reconnect.summary("chargepin"),
            "scan": reconnect.summary("scan"),
            "scan_connect_read": reconnect.summary("scan_connect_read"),
            "link": reconnect.summary("link"),
            "encrypt": reconnect.summary("encrypt"),
            "bare_bumble_link": bare_reconnect.summary("link"),
            "bare_bumble_encrypt": bare_reconnect.summary("encrypt"),
        },
        "growth": series or None,
    }


# ---------------------------------------------------------------- daemon in its own process


def _rss_kib(process: psutil.Process) -> int:
    return int(process.memory_info().rss // 1024)


async def _start_child(state: Path, transport: str) -> asyncio.subprocess.Process:
    """Start the daemon child and wait for its `ready` line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargepin.lab.bench_daemon",
        str(state),
        transport,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), CHILD_START_TIMEOUT)
    except TimeoutError:
        line = b""
    if not line.decode().startswith(READY):
        await _stop_child(child)
        raise BenchError(
            f"the daemon child did not start (exit code {child.returncode}); run "
            f"`{sys.executable} -m chargepin.lab.bench_daemon {state} {transport}` to see why"
        )
    return child


async def _stop_child(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.terminate()
        try:
            await asyncio.wait_for(child.wait(), 10.0)
        except TimeoutError:
            child.kill()
            await child.wait()


async def measure_rss(directory: Path, pairings: int) -> dict[str, Any]:
    """The daemon's RSS in its own process, over `pairings` first-time pairings.

    The bench serves the virtual radio on two loopback ports, the daemon child takes one and
    the phone (in this process) the other. Each round the phone forgets the charger and pairs
    again; the charger replaces the bond, as it does for a phone that was reset.
    """
    state = directory / "rss-charger.db"
    store = provision(state, ChargerSpec(serial="CP-RSS", profile=PROFILE))
    pin = store.current_pin()
    address = store.identity.address
    store.close()
    charger_port, phone_port = free_ports(2)
    transports = await serve_radio([charger_port, phone_port])
    child: asyncio.subprocess.Process | None = None
    samples: list[dict[str, int]] = []
    pair_times: list[float] = []
    sample_every = max(RSS_CHECKPOINT, pairings // 10)
    try:
        child = await _start_child(state, f"tcp-client:127.0.0.1:{charger_port}")
        process = psutil.Process(child.pid)
        samples.append({"pairings": 0, "rss_kib": _rss_kib(process)})
        bonds = open_keystore_file(directory / "rss-phone-bonds.db")
        try:
            async with open_hci(f"tcp-client:127.0.0.1:{phone_port}") as endpoints:
                phone = Phone(
                    endpoints,
                    bonds,
                    identity=load_identity(bonds, "bench phone"),
                    pairing_timeout=PAIRING_TIMEOUT,
                )
                pair_timer = CallTimer(phone.device, "pair")
                async with phone:
                    for done in range(1, pairings + 1):
                        pair_timer.reset()
                        link = await phone.connect(address, pin)
                        pair_times.append(_ms(pair_timer.last))
                        await link.status()
                        await link.disconnect()
                        await phone.forget(address)
                        if done in (RSS_CHECKPOINT, pairings) or done % sample_every == 0:
                            samples.append({"pairings": done, "rss_kib": _rss_kib(process)})
        finally:
            bonds.close()
    finally:
        if child is not None:
            await _stop_child(child)
        for transport in transports:
            await transport.close()

    start, end = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    result: dict[str, Any] = {
        "pairings": pairings,
        "samples": samples,
        "start_kib": start,
        "end_kib": end,
        "growth_kib": end - start,
        "pairing_ms": Summary.of(pair_times).to_dict(),
    }
    if pairings > RSS_CHECKPOINT:
        steady = end - next(s["rss_kib"] for s in samples if s["pairings"] == RSS_CHECKPOINT)
        result["growth_after_checkpoint_kib"] = steady
        result["growth_per_pairing_after_checkpoint_kib"] = round(
            steady / (pairings - RSS_CHECKPOINT), 2
        )
    return result


# ---------------------------------------------------------------- report


def _filesystem(path: Path) -> str:
    """The file system type the SQLite state lives on (fsync cost depends on it)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for partition in psutil.disk_partitions(all=True):
        mount = partition.mountpoint
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, partition.fstype
    return kind


def machine_info(directory: Path) -> dict[str, Any]:
    """What the numbers were measured on: they mean little without it."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "bumble": metadata.version("bumble"),
        "chargepin": metadata.version("chargepin"),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "state_filesystem": _filesystem(directory),
    }


def bond_points(text: str) -> tuple[int, ...]:
    """ "1,10,100" -> (1, 10, 100): increasing numbers of bonds, each at least 1."""
    try:
        points = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise BenchError(
            f"--bonds takes numbers separated by commas, e.g. 1,10,100; got {text!r}"
        ) from None
    check_bond_points(points)
    return points


def check_bond_points(points: Sequence[int]) -> None:
    """Refuse a growth series that is not increasing numbers of bonds, each at least 1."""
    if any(n < 1 for n in points) or list(points) != sorted(set(points)):
        raise BenchError(f"--bonds takes increasing numbers of at least 1, got {list(points)}")


def command_line(
    json_path: Path | None, rounds: int, rss_pairings: int, bonds: Sequence[int] = ()
) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = ["chargepin bench pairing"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(f"--rounds {rounds} --rss-pairings {rss_pairings}")
    if bonds:
        parts.append(f"--bonds {','.join(str(n) for n in bonds)}")
    return " ".join(parts)


async def run_bench(
    directory: Path,
    rounds: int,
    rss_pairings: int,
    command: str = "",
    bonds: Sequence[int] = (),
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; state files go under `directory`.

    `rss_pairings=0` skips the memory run (and its child process); "rss" is then null. `bonds`
    (e.g. GROWTH_POINTS) adds "growth": the pairing at each number of bonds on the charger.
    """
    check_bond_points(bonds)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if rss_pairings < 0:
        raise ValueError(
            f"rss_pairings must be 0 (skip the memory run) or more, got {rss_pairings}"
        )
    started = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(directory),
        "profile": PROFILE,
        "rounds": rounds,
    }
    report.update(await measure_pairing(directory, rounds, bonds))
    report["rss"] = await measure_rss(directory, rss_pairings) if rss_pairings else None
    report["duration_s"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1)
    return report


def _row(summary: dict[str, Any]) -> tuple[str, str, str]:
    return f"{summary['median']:.1f}", f"{summary['p90']:.1f}", str(summary["n"])


def report_table(report: dict[str, Any]) -> Table:
    """The short human summary the CLI prints."""
    pairing = report["pairing"]
    reconnect = report["bonded_reconnect_ms"]
    rss = report["rss"]
    table = Table(title="chargepin bench pairing (ms; ratios side by side)")
    table.add_column("measurement")
    table.add_column("median", justify="right")
    table.add_column("p90", justify="right")
    table.add_column("n", justify="right")
    table.add_row("pair(): chargepin daemon + phone", *_row(pairing["chargepin_ms"]))
    table.add_row("pair(): bare Bumble, static passkey", *_row(pairing["bare_bumble_ms"]))
    verdict = "pass" if pairing["pass"] else "MISS"
    table.add_row(
        f"ratio of medians (target <= {pairing['target']}): {verdict}",
        f"{pairing['ratio_median']:.2f}",
        "",
        f"paired {pairing['ratio_paired_median']:.2f}",
    )
    table.add_row(
        "Phone.connect: scan+connect+discover+pair", *_row(pairing["chargepin_connect_ms"])
    )
    table.add_row(
        "bonded reconnect: connect -> protected read", *_row(reconnect["connect_to_read"])
    )
    table.add_row("  of which chargepin's own part", *_row(reconnect["chargepin"]))
    table.add_row("  of which link connect", *_row(reconnect["link"]))
    table.add_row("  bare Bumble link connect, bonded", *_row(reconnect["bare_bumble_link"]))
    table.add_row("bonded reconnect: scan", *_row(reconnect["scan"]))
    for point in report["growth"] or ():
        table.add_row(
            f"pair() with {point['bonds']} bonds: chargepin / bare",
            f"{point['chargepin_ms']['median']:.1f} / {point['bare_bumble_ms']['median']:.1f}",
            "",
            f"ratio {point['ratio_median']:.2f}",
        )
    if rss is not None:
        table.add_row(
            f"daemon RSS after {rss['pairings']} pairings (KiB)",
            str(rss["end_kib"]),
            "",
            f"{rss['growth_kib']:+d} KiB from {rss['start_kib']}",
        )
    return table


def plot_growth(series: Sequence[dict[str, Any]], path: Path) -> None:
    """Draw the pairing against the charger's bonds (log scale) into a PNG: the ratio to bare
    Bumble measured beside it (what the target is about), and both arms' medians."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    bonds = [point["bonds"] for point in series]
    figure, (ratio, times) = pyplot.subplots(1, 2, figsize=(9, 3.5))
    ratio.plot(bonds, [point["ratio_median"] for point in series], marker="o", label="medians")
    ratio.plot(
        bonds, [point["ratio_paired_median"] for point in series], marker="s", label="paired"
    )
    ratio.axhline(RATIO_TARGET, color="grey", linestyle="--", label=f"target {RATIO_TARGET}")
    ratio.set_ylim(0.8, max(1.5, *(point["ratio_median"] for point in series)))
    ratio.set_ylabel("chargepin / bare Bumble")
    ratio.set_title("pair() ratio, side by side")
    for key, label in (("chargepin_ms", "chargepin daemon + phone"), ("bare_bumble_ms", "bare")):
        times.plot(bonds, [point[key]["median"] for point in series], marker="o", label=label)
    times.set_ylim(bottom=0)
    times.set_ylabel("median pair() (ms)")
    times.set_title("pair() medians (machine load moves both)")
    for axes in (ratio, times):
        axes.set_xscale("log")
        axes.set_xlabel("bonds on the charger")
        axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


@contextlib.contextmanager
def _quiet_bumble() -> Iterator[None]:
    """Bumble logs warnings for expected events (e.g. links dropped during shutdown)."""
    bumble_logger = logging.getLogger("bumble")
    level = bumble_logger.level
    bumble_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bumble_logger.setLevel(level)


def run_pairing_bench(
    json_path: Path | None,
    rounds: int = DEFAULT_ROUNDS,
    rss_pairings: int = DEFAULT_RSS_PAIRINGS,
    bonds: Sequence[int] = (),
    plot: Path | None = None,
) -> int:
    """Run the bench, print a short table, write the JSON report; the exit code.

    0 when the pairing ratio meets the target, 1 when it misses it, 2 when the bench could not
    measure (the message says why). Timing is never asserted beyond the ratio target.
    """
    command = command_line(json_path, rounds, rss_pairings, bonds)

    def measure() -> dict[str, Any]:
        with _quiet_bumble(), tempfile.TemporaryDirectory(prefix="chargepin-bench-") as tmp:
            report = asyncio.run(run_bench(Path(tmp), rounds, rss_pairings, command, bonds))
        if plot is not None and report["growth"]:
            plot_growth(report["growth"], plot)
        return report

    return report_bench(
        measure,
        (ChargepinError, ValueError, TimeoutError),
        report_table,
        json_path,
        lambda report: bool(report["pairing"]["pass"]),
    )


def report_bench(
    measure: Callable[[], dict[str, Any]],
    failures: tuple[type[Exception], ...],
    table: Callable[[dict[str, Any]], Table],
    json_path: Path | None,
    passed: Callable[[dict[str, Any]], bool],
) -> int:
    """Every bench's ending: run `measure`, print its table, write its JSON report; the exit
    code: 0 when `passed`, 1 when a target was missed, 2 when `measure` could not measure (one
    of `failures`, said in one line)."""
    console = Console()
    try:
        report = measure()
    except failures as error:
        console.print(f"[red]bench failed:[/red] {error}")
        return 2
    console.print(table(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"report written to {json_path}")
    return 0 if passed(report) else 1
