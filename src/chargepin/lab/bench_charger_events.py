"""`chargepin bench charger-events`: a security event's CPU on the charger, cause to answer.

Issue 13's target: what one security event costs the charger process, from its cause (the
daemon records it: log entry, counter, queue row, one synced commit) to the
SecurityEventNotification sent by `StationLink` and its row deleted once the CSMS answered,
<= 1 ms of CPU. Side by side, in the same process and run, a bare arm sends the same number
of SecurityEventNotifications with the `ocpp` package's own ChargePoint (no state file, no
queue) over its own connection to the same CSMS: what OCPP itself costs on this stack.

The CSMS is the bare `ocpp` CSMS of `chargepin bench ocpp` (`bench_ocpp_bare`) in its own
process, so its CPU is not counted. The charger's daemon is built on a virtual controller but
not powered on: an idle radio costs nothing per event, and a phone on the same air would add
its own CPU to this process. Slices of the two arms alternate (chargepin, bare, bare,
chargepin, ...) so both see the same moment of the machine; CPU is `time.process_time` of
this process (every thread: the `ocpp` package validates in asyncio's thread pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ocpp import messages as ocpp_messages
from ocpp.v201 import ChargePoint, call
from rich.table import Table
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.ocpp_station import StationConfig, StationLink, StationTimings
from chargepin.charger.store import StateStore
from chargepin.core import ocpp_events
from chargepin.core.csms_link import SUBPROTOCOL, csms_endpoint
from chargepin.core.errors import ChargepinError
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts
from chargepin.lab.bench import BenchError, machine_info, report_bench
from chargepin.lab.bench_ocpp import serve
from chargepin.lab.ports import LOOPBACK, free_port
from chargepin.lab.testbed import ChargerSpec, provision
from chargepin.radio.virtual import VirtualRadio

TARGET_MS: Final = 1.0
"""Issue 13: CPU per security event on the charger, queue write + send."""
SERIAL: Final = "CP-EVENTS-1"
BARE_ID: Final = "CP-EVENTS-BARE"
DEFAULT_EVENTS: Final = 200
"""Events per slice and arm."""
DEFAULT_SLICES: Final = 10
WARM_UP: Final = 20
ANSWER_TIMEOUT: Final = 30.0
CHARGER_VALIDATES_ASYNC: Final = bool(ocpp_messages.ASYNC_VALIDATION)
"""How the charger configures the `ocpp` package (charger/ocpp_station.py, imported above)."""
ARMS: Final = {
    "chargepin": CHARGER_VALIDATES_ASYNC,
    "bare": True,
    "bare_inline": False,
}
"""Each arm and whether the `ocpp` package validates in its thread pool during its slices:
the bare arm as the package ships (in the pool), bare_inline as the charger sets it."""


class AnsweredStore(StateStore):
    """The daemon's state store, telling the bench when the CSMS's answer emptied the queue.

    A subclass (not a patch): the product's `acknowledge` runs unchanged, then one Event.set.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered = asyncio.Event()

    def acknowledge(self, event_id: int) -> None:
        super().acknowledge(event_id)
        self.answered.set()


@dataclass
class Arms:
    """The two ways of sending one security event, each awaited until the CSMS answered."""

    store: AnsweredStore
    bare: ChargePoint
    clock: Callable[[], float]
    sent: int = 0
    record_cpu: float = 0.0
    """CPU seconds spent in `record_event` (the cause's synced commit), for the split."""

    def send(self, arm: str) -> Callable[[], Any]:
        return self.chargepin if arm == "chargepin" else self.bare_send

    async def chargepin(self) -> None:
        """A wrong PIN's event as the daemon records it; the link sends it on its own."""
        self.sent += 1
        self.store.answered.clear()
        facts = EventFacts(phone=_phone(self.sent), reason="wrong_pin")
        started = time.process_time()
        self.store.record_event(
            EventKind.PAIRING_FAILED, f"{_phone(self.sent)} wrong_pin", self.clock(), facts
        )
        self.record_cpu += time.process_time() - started
        await asyncio.wait_for(self.store.answered.wait(), ANSWER_TIMEOUT)

    async def bare_send(self) -> None:
        """The same notification (type, techInfo, customData) through the `ocpp` package."""
        self.sent += 1
        info = ocpp_events.tech_info(
            {"origin": "ble", "phone": _phone(self.sent), "reason": "wrong_pin", "epoch": 1},
            1,
            0.0,
            "MaintenanceLoginFailed",
        )
        await self.bare.call(
            call.SecurityEventNotification(
                type="MaintenanceLoginFailed",
                timestamp=ocpp_events.timestamp(self.clock()),
                tech_info=info,
                custom_data=ocpp_events.custom_data(BARE_ID, self.sent),
            ),
            suppress=False,
        )


def _phone(number: int) -> str:
    return f"F1:22:33:44:{number // 256 % 256:02X}:{number % 256:02X}"


async def _run_arm(arms: Arms, name: str, events: int) -> dict[str, float]:
    send = arms.send(name)
    ocpp_messages.ASYNC_VALIDATION = ARMS[name]
    recorded = arms.record_cpu
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(events):
            await send()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        ocpp_messages.ASYNC_VALIDATION = CHARGER_VALIDATES_ASYNC
    result = {"cpu_ms_per_event": cpu * 1000 / events, "wall_ms_per_event": wall * 1000 / events}
    if name == "chargepin":
        result["record_cpu_ms_per_event"] = (arms.record_cpu - recorded) * 1000 / events
    return result


@contextlib.asynccontextmanager
async def charger_and_bare(directory: Path, url: str) -> AsyncIterator[Arms]:
    """The daemon with its OCPP link connected and a bare `ocpp` station, both to `url`."""
    provision(directory / "charger.db", ChargerSpec(serial=SERIAL)).close()
    store = AnsweredStore.open(directory / "charger.db")
    assert isinstance(store, AnsweredStore)  # `open` makes its class's instance
    radio = VirtualRadio()
    daemon = ChargerDaemon(store, radio.attach("charger"))
    link = StationLink(
        daemon, StationConfig(csms_endpoint(url + SERIAL, SERIAL), timings=StationTimings())
    )
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), ANSWER_TIMEOUT)
        while store.queue_length():  # StartupOfTheDevice
            store.answered.clear()
            await asyncio.wait_for(store.answered.wait(), ANSWER_TIMEOUT)
        async with connect(
            url + BARE_ID, subprotocols=[Subprotocol(SUBPROTOCOL)], compression=None, proxy=None
        ) as websocket:
            bare = ChargePoint(BARE_ID, websocket, response_timeout=ANSWER_TIMEOUT)
            receiver = asyncio.get_running_loop().create_task(bare.start())
            try:
                yield Arms(store, bare, daemon.clock.now)
            finally:
                receiver.cancel()
                with contextlib.suppress(BaseException):
                    await receiver
    finally:
        await link.stop()
        store.close()


async def measure(url: str, directory: Path, events: int, slices: int) -> dict[str, Any]:
    """Warm both arms up, then `slices` interleaved slices of `events` events each."""
    async with charger_and_bare(directory, url) as arms:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ARMS}
        for name in ARMS:
            await _run_arm(arms, name, WARM_UP)
        names = list(ARMS)
        for index in range(slices):
            # Each slice starts with another arm: none always follows the same one.
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                runs[name].append(await _run_arm(arms, name, events))
        queued = arms.store.queue_length()
        profile = await _profile(arms.chargepin, events)
    if queued:
        raise BenchError(f"{queued} events still queued after the CSMS answered them all")
    return {"slices": runs, "profile": profile}


async def _profile(send: Callable[[], Any], events: int) -> list[dict[str, Any]]:
    """cProfile of `events` more events of the chargepin arm: the heaviest functions by
    cumulative time (after the measured slices, so the profiler's cost is in no figure)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(events):
        await send()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(path)}:{line}({name})",
                "calls_per_event": round(calls / events, 2),
                "own_ms_per_event": round(own * 1000 / events, 4),
                "cumulative_ms_per_event": round(cumulative * 1000 / events, 4),
            }
        )
    rows.sort(key=lambda row: row["cumulative_ms_per_event"], reverse=True)
    return rows[:40]


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summary(slices: list[dict[str, float]], key: str) -> dict[str, Any]:
    values = [round(s[key], 4) for s in slices]
    return {"median": round(statistics.median(values), 4), "slices": values}


def run_bench(directory: Path, events: int, slices: int, command: str) -> dict[str, Any]:
    port = free_port()
    with serve("bare", ["chargepin.lab.bench_ocpp_bare", str(port)], port, {}, directory) as server:
        url = f"ws://{LOOPBACK}:{port}/ocpp/"
        load_before = os.getloadavg()
        measured = asyncio.run(measure(url, directory, events, slices))
        if server.process.poll() is not None:
            raise BenchError("the CSMS ended during the bench; see its log")
    arms = {
        name: {key: summary(runs, key) for key in runs[0]}
        for name, runs in measured["slices"].items()
    }
    ours = arms["chargepin"]["cpu_ms_per_event"]["median"]
    ratios = {
        f"chargepin_over_{name}": _ratios(measured["slices"]["chargepin"], measured["slices"][name])
        for name in ARMS
        if name != "chargepin"
    }
    machine = machine_info(directory)
    machine["load_average_before"] = [round(value, 2) for value in load_before]
    return {
        "command": command,
        "events_per_slice": events,
        "slices": slices,
        "csms": "python -m chargepin.lab.bench_ocpp_bare (own process, not counted)",
        "arms": arms,
        "ratios": ratios,
        "target_ms": TARGET_MS,
        "pass": ours <= TARGET_MS,
        "profile": measured["profile"],
        "machine": machine,
    }


def _ratios(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> dict[str, Any]:
    """CPU per event: ours over theirs (medians), the median of the per-slice ratios, and
    what ours adds in ms."""
    mine = statistics.median(s["cpu_ms_per_event"] for s in ours)
    base = statistics.median(s["cpu_ms_per_event"] for s in theirs)
    paired = [
        a["cpu_ms_per_event"] / b["cpu_ms_per_event"]
        for a, b in zip(ours, theirs, strict=True)
        if b["cpu_ms_per_event"] > 0
    ]
    return {
        "ratio_median": round(mine / base, 3) if base else None,
        "ratio_paired_median": round(statistics.median(paired), 3) if paired else None,
        "added_ms": round(mine - base, 4),
    }


def command_line(json_path: Path | None, events: int, slices: int) -> str:
    parts = ["chargepin bench charger-events"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(f"--events {events} --slices {slices}")
    return " ".join(parts)


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title="chargepin bench charger-events: one security event on the charger")
    table.add_column("per event (median of slices)")
    table.add_column("CPU ms", justify="right")
    table.add_column("wall ms", justify="right")
    table.add_column("chargepin / arm", justify="right")
    labels = {
        "chargepin": "chargepin: record, queue, send, answer, delete",
        "bare": "bare ocpp call (package defaults)",
        "bare_inline": "bare ocpp call (inline validation)",
    }
    for name, label in labels.items():
        arm = report["arms"][name]
        ratio = report["ratios"].get(f"chargepin_over_{name}")
        table.add_row(
            label,
            f"{arm['cpu_ms_per_event']['median']:.3f}",
            f"{arm['wall_ms_per_event']['median']:.3f}",
            "-" if ratio is None else f"{ratio['ratio_median']:.2f}",
        )
    verdict = "pass" if report["pass"] else "MISS"
    table.caption = (
        f"chargepin <= {report['target_ms']:g} ms of CPU per event: {verdict}; "
        f"load average {report['machine']['load_average'][0]}"
    )
    return table


def run_charger_events_bench(
    json_path: Path | None, events: int = DEFAULT_EVENTS, slices: int = DEFAULT_SLICES
) -> int:
    """Run the bench, print its table, write the JSON report; 0 pass, 1 miss, 2 no measure."""
    command = command_line(json_path, events, slices)

    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-events-") as tmp:
            return run_bench(Path(tmp), events, slices, command)

    return report_bench(
        run,
        (ChargepinError, OSError, WebSocketException, TimeoutError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
