"""`chargepin lab fuzz`: every byte-level input fuzzed for minutes, with a report.

The pure targets are `chargepin.lab.strategies.TARGETS`; the GATT target here writes fuzzed
values to every attribute of a real daemon on the virtual radio, from a phone paired with the
PIN and from a central that never paired, and checks each answer against docs/PROTOCOL.md.

Hypothesis has no time budget, so each target runs batches (`settings(max_examples=...)`, each
with its own `hypothesis.seed`, derived from `--seed`) until its share of the time is used up.
A failing batch has been shrunk by hypothesis: its minimal example and error go to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
import signal
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import hypothesis
from bumble.gatt_client import AttributeProxy
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from rich.console import Console
from rich.table import Table

from chargepin.charger.daemon import ChargerDaemon
from chargepin.clock import FakeClock
from chargepin.core import protocol
from chargepin.core.events import EventKind
from chargepin.core.protocol import AdminResult, ChargerStatus, ControlOp, OpenInfo
from chargepin.lab.raw_gatt import GattTable, RawGattClient, connect_unpaired
from chargepin.lab.security_state import SecurityState
from chargepin.lab.strategies import (
    OWNER,
    TARGETS,
    TICKET_REASONS_FOR_JUNK,
    ErrorLog,
    FuzzTarget,
    GattWrite,
    control_oracle,
    exception_name,
    expected_answers,
    gatt_writes,
)
from chargepin.lab.testbed import OwnerAuthority, Testbed
from chargepin.phone.client import ChargerLink

T = TypeVar("T")

ANSWER_TIMEOUT = 5.0
"""Seconds any one GATT example may take; Bumble's own GATT timeout (30 s) would hide a hang."""
GATT_EXAMPLE_TIMEOUT = 3.0
"""Seconds one GATT example (about ten round trips on the virtual radio, milliseconds each)
may take before it counts as a request the daemon left unanswered."""
EXAMPLE_TIME_LIMIT = 30.0
"""Seconds one example of a pure target may take before it counts as a hang."""
FIRST_BATCH = 20
BATCH_SECONDS = 2.0
"""Batches are sized to take about this long, so a target overruns its share by little."""
MAX_BATCH = 5000
MAX_FAILURES_KEPT = 10
GATT_TARGET = "gatt-writes"


# ------------------------------------------------------------------------------ the air


class Air:
    """A charger (PIN on, hardened) and a phone paired with its PIN, driven from sync code;
    with `stranger=True` also a central that connected without pairing.

    Hypothesis's @given cannot drive a coroutine, so each example runs one coroutine on the
    caller's `asyncio.Runner`; the daemon's tasks run whenever an example does.
    """

    def __init__(self, runner: asyncio.Runner, directory: Path) -> None:
        self.runner = runner
        self.clock = FakeClock()
        self.bed = Testbed(directory, self.clock)
        self.daemon: ChargerDaemon
        self.link: ChargerLink
        self.owner: RawGattClient
        self.stranger: RawGattClient | None = None
        self.table: GattTable
        self.authority: OwnerAuthority

    def run(self, awaitable: Awaitable[T], timeout: float = ANSWER_TIMEOUT) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(awaitable, timeout)

        return self.runner.run(bounded())

    async def start(self, stranger: bool = False) -> None:
        self.daemon = await self.bed.charger()
        serial = self.daemon.store.identity.serial
        phone = await self.bed.phone()
        self.link = await phone.connect(serial, pin=str(self.daemon.store.current_pin()))
        assert self.link.paired_now
        self.owner = await RawGattClient.discover(self.link.connection, self.link.peer)
        self.table = self.owner.table
        self.authority = self.bed.authority(self.daemon)
        if stranger:
            self.stranger = await connect_unpaired(await self.bed.phone("stranger"), serial)

    async def close(self) -> None:
        await self.bed.close()

    @property
    def phone_address(self) -> str:
        return str(self.link.connection.self_address)

    async def write(self, attribute: AttributeProxy[bytes], value: bytes) -> int | None:
        """The owner's write: the ATT error code, or None when the charger accepted it."""
        return await self.owner.write(attribute, value)

    async def read(self, attribute: AttributeProxy[bytes]) -> bytes | int:
        """The owner's read: the value, or the ATT error code."""
        return await self.owner.read(attribute)

    async def security_state(self) -> SecurityState:
        """Everything a write must not change unless it is a valid owner ticket."""
        return SecurityState.of(self.daemon.store)

    async def still_serving(self) -> ChargerStatus:
        """A protected read on the same link: the daemon answers and the link is still up."""
        return await self.link.status()


async def write_and_check(air: Air, write: GattWrite) -> None:
    """One fuzzed write, its answer against the protocol, and the charger after it.

    The charger is first set charging or idle (the owner writes start or stop). The answer
    must be the one docs/PROTOCOL.md gives (Write Commands get none); the security state must
    not move; the owner's protected read, the stranger's info read and, after a
    ticket write, the admin result must still be served on the same links.
    """
    assert air.stranger is not None
    central = air.owner if write.central == OWNER else air.stranger
    admin = air.table.value(protocol.ADMIN_UUID).handle
    control = air.table.value(protocol.CONTROL_UUID).handle
    op = ControlOp.START if write.charging else ControlOp.STOP
    assert await air.owner.write(control, bytes([op])) is None, f"{op.name} refused"
    before = await air.security_state()
    status = await air.link.status()
    rejected = air.daemon.store.counters()[EventKind.TICKET_REJECTED]
    code = await central.write(write.handle, write.value, write.with_response)
    if write.with_response:
        allowed = expected_answers(air.table, write, status)
        shown = "Write Response" if code is None else f"0x{code:02X}"
        assert code in allowed, f"answered {shown}; allowed: {sorted(map(str, allowed))}"
    if write.central == OWNER and write.handle == admin and len(write.value) <= 512:
        raw = await air.owner.read(air.table.value(protocol.ADMIN_RESULT_UUID))
        assert isinstance(raw, bytes), f"admin result read failed with 0x{raw:02X}"
        result = AdminResult.decode(raw)
        assert not result.ok
        assert result.reason in TICKET_REASONS_FOR_JUNK, result.reason
        assert result.detail
        assert air.daemon.store.counters()[EventKind.TICKET_REJECTED] == rejected + 1
    after = await air.still_serving()
    if write.central == OWNER and write.handle == control:
        expected = control_oracle(status, write.value) or status
        assert after == expected, f"status after the write {after!r}, expected {expected!r}"
    assert await air.security_state() == before
    info = await air.stranger.read(air.table.value(protocol.INFO_UUID))
    assert isinstance(info, bytes), f"info read failed with 0x{info:02X}"
    assert OpenInfo.decode(info).serial == air.daemon.store.identity.serial


class GattHarness:
    """The GATT target's air: started on first use, rebuilt after a failing example."""

    def __init__(self, directory: Path, runner: asyncio.Runner, errors: ErrorLog) -> None:
        self.directory = directory
        self.runner = runner
        self.errors = errors
        self.air: Air | None = None
        self.starts = 0

    def ensure(self) -> Air:
        if self.air is None:
            self.starts += 1
            air = Air(self.runner, self.directory / f"air-{self.starts}")
            air.bed.directory.mkdir(parents=True)
            try:
                air.run(air.start(stranger=True), timeout=30.0)
            except BaseException:
                self.runner.run(air.close())
                raise
            self.air = air
            self.errors.take()
        return self.air

    def check(self, write: GattWrite) -> None:
        air = self.ensure()
        self.errors.take()
        try:
            self.runner.run(self._example(air, write))
        except BaseException:
            # A failed example may leave the links in any state; the next one (hypothesis
            # replays some while shrinking) gets a fresh daemon and fresh links.
            self.reset()
            raise

    async def _example(self, air: Air, write: GattWrite) -> None:
        """Run one example; stop at once when the daemon logs an error (Bumble logs what a
        handler raised and never answers the request), else after GATT_EXAMPLE_TIMEOUT."""
        logged = asyncio.Event()
        self.errors.on_record = logged.set
        checked = asyncio.ensure_future(write_and_check(air, write))
        noticed = asyncio.ensure_future(logged.wait())
        try:
            done, _ = await asyncio.wait(
                {checked, noticed},
                timeout=GATT_EXAMPLE_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self.errors.on_record = None
            noticed.cancel()
            if not checked.done():
                checked.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checked
        if checked in done:
            checked.result()  # the check's own AssertionError, if any
        elif noticed not in done:
            raise AssertionError(
                f"no answer within {GATT_EXAMPLE_TIMEOUT:g} s; the daemon logged "
                f"{self.errors.take()}"
            )
        logged_errors = self.errors.take()
        assert not logged_errors, f"the daemon logged {logged_errors}"

    def target(self) -> FuzzTarget[GattWrite]:
        """The GATT fuzz target on this harness's air."""
        air = self.ensure()
        return FuzzTarget(
            GATT_TARGET,
            "every attribute of the daemon's GATT table, written by a PIN-paired phone and by "
            "an unpaired central (with and without response), over the virtual radio",
            gatt_writes(air.table, air.daemon.store.identity.serial, air.link.connection.att_mtu),
            self.check,
        )

    def reset(self) -> None:
        if self.air is not None:
            air, self.air = self.air, None
            with contextlib.suppress(Exception):  # a broken air may not even close
                self.runner.run(asyncio.wait_for(air.close(), 10.0))
        self.errors.take()


@contextlib.contextmanager
def gatt_harness(directory: Path) -> Iterator[GattHarness]:
    """A started GATT harness (state files under `directory`), closed on the way out."""
    errors = ErrorLog()
    root = logging.getLogger()
    root.addHandler(errors)
    with asyncio.Runner() as runner:
        harness = GattHarness(directory, runner, errors)
        try:
            harness.ensure()
            yield harness
        finally:
            harness.reset()
            root.removeHandler(errors)


# ------------------------------------------------------------------------------ the runner


@dataclass(frozen=True)
class Failure:
    """A minimal failing example as hypothesis shrank it, and what went wrong."""

    example: str
    error: str
    seed: int


@dataclass
class TargetRun:
    """What one target did in a run."""

    name: str
    description: str
    examples: int = 0
    batches: int = 0
    failed_batches: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    """Distinct failures (by error text), at most MAX_FAILURES_KEPT."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "examples": self.examples,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "seconds": round(self.seconds, 1),
            "failures": [
                {"example": f.example, "error": f.error, "seed": f.seed} for f in self.failures
            ],
        }


class ExampleHang(AssertionError):
    """One example ran longer than EXAMPLE_TIME_LIMIT."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ExampleHang in the block after `seconds` (POSIX main thread; else no limit)."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise ExampleHang(f"the example ran longer than {seconds:.0f} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe(error: BaseException) -> str:
    """`Type: message`, cut to a readable length."""
    text = f"{exception_name(error)}: {error}"
    return text if len(text) <= 600 else text[:597] + "..."


def run_batch(
    target: FuzzTarget[Any], seed: int, examples: int, limit: float | None
) -> tuple[int, Failure | None]:
    """Run `examples` examples of `target` under `seed`: (calls made, the failure or None).

    Shrinking ends by running the minimal failing example once more, so the last failing
    call is the one to report.
    """
    calls = 0
    last: list[tuple[str, str]] = []

    @hypothesis.seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(target.strategy)
    def batch(example: Any) -> None:
        nonlocal calls
        calls += 1
        try:
            with time_limit(limit) if limit else contextlib.nullcontext():
                target.check(example)
        except Exception as error:
            last[:] = [(repr(example), describe(error))]
            raise

    try:
        batch()
    except Exception as error:  # the report holds it: a finding, or a lab bug
        example, message = last[0] if last else ("(no example: hypothesis failed)", "")
        return calls, Failure(example, message or describe(error), seed)
    return calls, None


def batch_seed(seed: int, target: str, index: int) -> int:
    """The seed of one batch: the same run seed, the same batches."""
    return random.Random(f"{seed}/{target}/{index}").getrandbits(64)


def run_target(
    target: FuzzTarget[Any],
    until: float,
    seed: int,
    limit: float | None = EXAMPLE_TIME_LIMIT,
    clock: Callable[[], float] = time.monotonic,
) -> TargetRun:
    """Batches of `target` until the clock passes `until` (at least one batch)."""
    run = TargetRun(target.name, target.description)
    size = FIRST_BATCH
    started = clock()
    while True:
        batch_started = clock()
        calls, failure = run_batch(target, batch_seed(seed, target.name, run.batches), size, limit)
        elapsed = clock() - batch_started
        run.batches += 1
        run.examples += calls
        if failure is not None:
            run.failed_batches += 1
            known = {f.error for f in run.failures}
            if failure.error not in known and len(run.failures) < MAX_FAILURES_KEPT:
                run.failures.append(failure)
        remaining = until - clock()
        if remaining <= 0:
            break
        if failure is None:
            rate = calls / max(elapsed, 1e-3)
            size = int(min(MAX_BATCH, max(1, rate * min(BATCH_SECONDS, remaining))))
    run.seconds = clock() - started
    return run


def command_line(minutes: float, seed: int, json_path: Path | None) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = [f"chargepin lab fuzz --minutes {minutes:g} --seed {seed}"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    return " ".join(parts)


def report_table(runs: list[TargetRun], title: str) -> Table:
    table = Table(title=title)
    table.add_column("target")
    table.add_column("examples", justify="right")
    table.add_column("failures", justify="right")
    table.add_column("seconds", justify="right")
    for run in runs:
        failures = str(len(run.failures)) if run.failures else "0"
        table.add_row(
            run.name,
            f"{run.examples:,}",
            f"[red]{failures}[/red]" if run.failures else failures,
            f"{run.seconds:.1f}",
        )
    table.add_row(
        "all", f"{sum(r.examples for r in runs):,}", str(sum(len(r.failures) for r in runs)), ""
    )
    return table


def run_fuzz(minutes: float, seed: int, json_path: Path | None) -> int:
    """Fuzz every target for its share of `minutes`; print a table, write the JSON report.

    0 when no target failed, 1 otherwise. Each target gets an equal share of the time from
    when it starts (the GATT target's start, a daemon and a pairing, counts in it); batches
    are sized to end with the share, so the whole run overshoots `minutes` by little.
    """
    console = Console()
    started_at = datetime.datetime.now(datetime.UTC)
    budget = minutes * 60.0
    names = [*TARGETS, GATT_TARGET]
    start = time.monotonic()
    runs: list[TargetRun] = []
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        for name in names:
            until = time.monotonic() + budget / len(names)
            if name == GATT_TARGET:
                try:
                    with gatt_harness(Path(tmp)) as harness:
                        runs.append(run_target(harness.target(), until, seed, limit=None))
                except Exception as error:  # a daemon that does not start fails
                    runs.append(
                        TargetRun(
                            name,
                            "the daemon on the virtual radio",
                            failed_batches=1,
                            failures=[Failure("(start)", describe(error), seed)],
                        )
                    )
            else:
                runs.append(run_target(TARGETS[name], until, seed))
    failures = sum(len(run.failures) for run in runs)
    report = {
        "command": command_line(minutes, seed, json_path),
        "seed": seed,
        "minutes": minutes,
        "started": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - start, 1),
        "hypothesis": hypothesis.__version__,
        "chargepin": metadata.version("chargepin"),
        "examples": sum(run.examples for run in runs),
        "failures": failures,
        "pass": failures == 0,
        "targets": [run.to_dict() for run in runs],
    }
    console.print(report_table(runs, f"chargepin lab fuzz: {minutes:g} min, seed {seed}"))
    for run in runs:
        for failure in run.failures:
            console.print(f"[red]{run.name}[/red] (batch seed {failure.seed}): {failure.error}")
            console.print(f"  minimal example: {failure.example}", soft_wrap=True)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"report written to {json_path}")
    return 0 if failures == 0 else 1
