"""`chargepin lab crash-loop`: kill -9 the charger daemon in the middle of pairings and lockouts,
then check what its state file kept (docs/SECURITY.md, "Crash loop").

Each iteration the real daemon (`chargepin charger run`, a child process on `chargepin radio`)
serves a seeded workload from phones in this process: right-PIN pairings that write a bond (a new
phone, or the owner pairing again), wrong PINs that count failures, move the epoch and cross the
lockout threshold, bonded reconnects. At a seeded moment the daemon gets SIGKILL: after a random
delay, the instant a phone sees the charger refuse its PIN, or the instant a phone finishes
pairing. With the daemon down, `check_state` reads the file; then the daemon is restarted on it
and must serve again. A charger lives for a few iterations (its lockout builds up across kills),
then a fresh one is provisioned.

What "intact" means is what the daemon promises (charger/daemon.py, `_record_failure`): a failed
attempt is committed before its Pairing Failed PDU is sent, and a bond before the charger serves
anything protected over it. So every wrong PIN a phone saw refused must be counted on disk (and,
hardened, have moved the epoch), every lock a phone was refused by must still be there, and every
bond the charger proved it held (a protected read succeeded) must survive, whole. What the phones
did not see may be lost: a failure the daemon had not committed, or a pairing the phone finished
while the charger had not yet stored the bond (SMP never acknowledges the last key PDU; the
phone's next encryption fails, "PIN or key missing" or a stale LTK, and it pairs again). The plan
is seeded; the timing is real, so two runs with one seed kill at slightly different instants.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bumble import smp
from bumble.device import Connection
from bumble.keys import PairingKeys
from rich.console import Console
from rich.table import Table

from chargepin.charger.errors import StateError
from chargepin.charger.service import current_pin, provision_charger
from chargepin.charger.store import StateStore
from chargepin.core import lockout
from chargepin.core.errors import ChargepinError
from chargepin.core.lockout import LockoutState
from chargepin.core.pin import Pin, weakness
from chargepin.core.profiles import DEFAULT_PROFILE, PROFILES
from chargepin.lab.bench import machine_info
from chargepin.lab.processes import Service, ServiceError, free_ports, start_charger, start_radio
from chargepin.phone.client import Phone
from chargepin.phone.errors import ChargerLocked, WrongPin
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file
from chargepin.radio.transport import open_hci

PROFILE = DEFAULT_PROFILE
"""The shipped profile: each failure moves the epoch; 5 failures / 60 s lock 300 s, doubling."""

MODEL, FIRMWARE, PRODUCED = "Pulsar Max", "6.11.2", dt.date(2025, 9, 1)
CHAIN_LENGTH = (2, 6)
"""A charger lives through this many kills (inclusive range) before a fresh one is provisioned."""

PLAN_LENGTH = 6
"""Workload steps planned per iteration; the kill usually lands before the last one."""

MAX_KILL_DELAY = 0.8
"""Seconds: a random kill lands uniformly in [0, this] after the workload starts (a step takes
about 0.1 s on the virtual radio, so most land inside a step, some after the last)."""

PAIRING_TIMEOUT = 5.0
STEP_TIMEOUT = 20.0
"""Seconds one workload step may take with the daemon alive (find, connect, pair, read)."""

CLOSE_TIMEOUT = 5.0
"""Seconds a phone gets to power on, or to hang up and power off."""

SETTLE_TIMEOUT = 1.0
"""Seconds a phone's connect in flight at the kill gets to complete before the workload is
cancelled: cancelling it would leave a pending connection in the virtual controller."""

LOCK_MARGIN = 3.0
"""Seconds a lock must still have to run for the restarted daemon to be asked to refuse."""

BOND_KEY_SIZE = 16
"""Octets of an LTK and of an IRK (Core spec Vol 3 Part H 2.4.2)."""

WRONG_PIN_CODES = (smp.ErrorCode.CONFIRM_VALUE_FAILED, smp.ErrorCode.DHKEY_CHECK_FAILED)
BONDS_TABLE = "bonds"
"""The table StateStore gives Bumble's key store (StateStore.keystore)."""

PHONE_CONTROLLERS = 8
"""Radio controllers the phones take in turn. A controller reopened at once could meet its
previous TCP client's late disconnect in the radio (which then drops the new client's packets),
so each phone takes the next one: a controller is reused only after the seven others."""


class Step(StrEnum):
    """One thing a phone does to the charger in the workload."""

    WRONG_PIN = "wrong_pin"  # the attacker types a wrong PIN: a failure, an epoch, maybe a lock
    PAIR_NEW = "pair_new"  # a new phone pairs with the PIN: a new bond row
    REPAIR = "repair"  # the owner forgets the charger and pairs again: its row is replaced
    RECONNECT = "reconnect"  # the owner reconnects with its bond and reads the status


STEP_WEIGHTS = {Step.WRONG_PIN: 3, Step.PAIR_NEW: 2, Step.REPAIR: 1, Step.RECONNECT: 2}


class KillMoment(StrEnum):
    """When the daemon gets SIGKILL."""

    RANDOM = "random"  # a seeded delay into the workload
    REFUSAL = "refusal"  # the instant a phone sees the charger refuse its PIN (0x04 or 0x09)
    BONDED = "bonded"  # the instant a phone finishes pairing, before the charger may have stored


KILL_WEIGHTS = {KillMoment.RANDOM: 5, KillMoment.REFUSAL: 3, KillMoment.BONDED: 2}


AFTER_WORKLOAD = "after the workload"
"""How a kill is described when the workload ended before its moment came (an idle daemon)."""


class CrashLoopError(ChargepinError):
    """The lab itself could not go on (not a finding about the charger)."""


# ---------------------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class StateSnapshot:
    """The parts of a state file that must never go backwards across a kill."""

    failures: int  # "pairing_failed" counter: a total, never pruned
    locks: int  # "locked" counter
    epoch: int
    lockout: LockoutState
    bonds: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "locks": self.locks,
            "epoch": self.epoch,
            "locked_until": self.lockout.locked_until,
            "bonds": len(self.bonds),
        }


@dataclass(frozen=True)
class ConfirmedBond:
    """A bond the charger proved it held (it served a protected read): it must survive."""

    phone: str  # the phone's identity address, the charger's key for the bond
    ltk: str  # hex, as the phone stored it
    irk: str  # hex, the phone's identity IRK, which the charger stored


@dataclass
class Witness:
    """What the phones saw before the kill, each noted the moment their own stack saw it."""

    wrong_pins: int = 0  # Pairing Failed 0x04/0x0B received from the charger
    locked_refusals: list[float] = field(default_factory=list)  # wall times of 0x09 received
    bond_changes: dict[str, ConfirmedBond | None] = field(default_factory=dict)  # None: forgot
    pairings_running: int = 0
    wrong_pins_accepted: int = 0  # pairings with a wrong PIN that succeeded: never expected
    anomalies: list[str] = field(default_factory=list)  # phone errors while the daemon ran


@dataclass(frozen=True)
class StateCheck:
    """The verdict on one state file after a kill."""

    after: StateSnapshot | None
    bonds_checked: int
    violations: tuple[str, ...]


def read_snapshot(store: StateStore) -> StateSnapshot:
    """The monotone parts of an open store."""
    counters = store.counters()
    rows = store.keystore.connection.execute(f"SELECT address FROM {BONDS_TABLE}").fetchall()
    return StateSnapshot(
        failures=counters["pairing_failed"],
        locks=counters["locked"],
        epoch=store.epoch,
        lockout=store.lockout_state,
        bonds=tuple(sorted(str(row[0]) for row in rows)),
    )


def snapshot(path: Path) -> StateSnapshot:
    """Open `path` as the service console does and read its snapshot."""
    with StateStore.open(path) as store:
        return read_snapshot(store)


def bond_problems(address: str, text: str) -> list[str]:
    """Why one stored bond is not whole: undecodable, or a key part missing or short.

    A passkey bond on our charger has an identity address type, an authenticated 16-octet LTK
    (LE Secure Connections) and the phone's 16-octet IRK; anything less was cut short.
    """
    try:
        keys = PairingKeys.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        return [f"bond {address} is not decodable by the key store ({error})"]
    problems = []
    if keys.address_type is None:
        problems.append(f"bond {address} has no address type")
    for part in ("ltk", "irk"):
        key = getattr(keys, part)
        if key is None or len(key.value) != BOND_KEY_SIZE:
            problems.append(f"bond {address} has no complete {part.upper()}")
    if keys.ltk is not None and not keys.ltk.authenticated:
        problems.append(f"bond {address} has an unauthenticated LTK (no PIN was used)")
    return problems


def check_state(
    path: Path,
    before: StateSnapshot,
    witness: Witness,
    confirmed: dict[str, ConfirmedBond],
) -> StateCheck:
    """Check a state file after a kill against what it held before and what the phones saw.

    `confirmed` are the bonds the charger proved before the kill. The profile is hardened, so
    every wrong PIN must also have moved the epoch.
    """
    violations, rows = _file_problems(path)
    try:
        store = StateStore.open(path)
    except StateError as error:
        return StateCheck(None, len(rows), (f"the state file does not open: {error}", *violations))
    with store:
        after = read_snapshot(store)
    violations.extend(_went_backwards(before, after))
    recorded = after.failures - before.failures
    if recorded < witness.wrong_pins:
        violations.append(
            f"the phones saw {witness.wrong_pins} wrong PINs refused, the file counts {recorded}"
        )
    if after.epoch - before.epoch < witness.wrong_pins:
        violations.append(
            f"the phones saw {witness.wrong_pins} wrong PINs refused, the epoch moved "
            f"{after.epoch - before.epoch}"
        )
    for seen_at in witness.locked_refusals:
        until = after.lockout.locked_until
        if until is None or until < seen_at - 1.0:
            violations.append(f"a phone was refused as locked at {seen_at:.3f}; the lock is gone")
    for bond in confirmed.values():
        violations.extend(_confirmed_problems(bond, rows))
    return StateCheck(after, len(rows), tuple(violations))


def _file_problems(path: Path) -> tuple[list[str], dict[str, str]]:
    """`PRAGMA integrity_check` and every bond row, read raw: a row the store would refuse to
    open with is still named, with what is missing."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        ) as db:
            integrity = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            rows = {
                str(address): str(text)
                for address, text in db.execute(f"SELECT address, keys FROM {BONDS_TABLE}")
            }
    except sqlite3.DatabaseError as error:
        return [f"SQLite cannot read the file: {error}"], {}
    problems = [] if integrity == ["ok"] else [f"integrity_check: {'; '.join(integrity[:5])}"]
    for address, text in rows.items():
        problems.extend(bond_problems(address, text))
    return problems, rows


def _went_backwards(before: StateSnapshot, after: StateSnapshot) -> Iterator[str]:
    if after.failures < before.failures:
        yield f"failures went backwards: {before.failures} -> {after.failures}"
    if after.locks < before.locks:
        yield f"lockouts went backwards: {before.locks} -> {after.locks}"
    if after.epoch < before.epoch:
        yield f"the epoch went backwards: {before.epoch} -> {after.epoch}"
    previous = before.lockout.locked_until
    now = after.lockout.locked_until
    if previous is not None and (now is None or now < previous):
        yield f"the lock until {previous:.3f} was shortened or lost ({now})"
    for address in set(before.bonds) - set(after.bonds):
        yield f"bond {address} was lost (the workload deletes none)"


def _confirmed_problems(bond: ConfirmedBond, rows: dict[str, str]) -> Iterator[str]:
    text = rows.get(bond.phone)
    if text is None:
        yield f"bond {bond.phone} was confirmed by a protected read, and is gone"
        return
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        keys = PairingKeys.from_dict(json.loads(text))
        if keys.ltk is None or keys.ltk.value.hex() != bond.ltk:
            yield f"bond {bond.phone} holds another LTK than the phone's"
        if keys.irk is None or keys.irk.value.hex() != bond.irk:
            yield f"bond {bond.phone} holds another IRK than the phone's"


# ---------------------------------------------------------------------------------- the kill


class Killer:
    """SIGKILLs the daemon once: after a delay, or the instant the phones see the chosen event."""

    def __init__(self, daemon: Service, moment: KillMoment, target: int, witness: Witness) -> None:
        self.daemon = daemon
        self.moment = moment
        self.target = target
        self.witness = witness
        self.fired = asyncio.Event()
        self.killed_at = 0.0  # wall clock, the daemon's clock
        self.how = ""
        self.triggered = False  # by the chosen event, not by the delay or the workload's end
        self.during_pairing = False
        self.died_on_its_own = False
        self._seen = 0

    def observe(self, moment: KillMoment) -> None:
        """A phone just saw `moment`; fire if it is the chosen one, the target-th time."""
        if moment is self.moment and not self.fired.is_set():
            self._seen += 1
            if self._seen == self.target:
                self.triggered = True
                self.fire(f"as a phone saw {moment} #{self.target}")

    def fire(self, how: str) -> None:
        if self.fired.is_set():
            return
        self.died_on_its_own = self.daemon.process.poll() is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.daemon.pid, signal.SIGKILL)
        self.killed_at = time.time()
        self.how = how
        self.during_pairing = self.witness.pairings_running > 0
        self.fired.set()


# ---------------------------------------------------------------------------------- phones


@dataclass
class Chain:
    """One charger's life across several kills: its file, its phones and their proven bonds."""

    number: int
    directory: Path
    serial: str
    address: str
    iterations_left: int
    confirmed: dict[str, ConfirmedBond] = field(default_factory=dict)
    guests: int = 0

    @property
    def state(self) -> Path:
        return self.directory / "charger.db"

    @property
    def owner_bonds(self) -> Path:
        return self.directory / "owner-bonds.db"

    @property
    def attacker_bonds(self) -> Path:
        return self.directory / "attacker-bonds.db"


class Phones:
    """Opens the lab's phones on the radio and reports what their stacks see to a Witness."""

    def __init__(
        self, ports: Iterator[int], chain: Chain, witness: Witness, killer: Killer | None
    ) -> None:
        self.ports = ports
        self.chain = chain
        self.witness = witness
        self.killer = killer
        self.live: list[Phone] = []

    def killed(self) -> bool:
        return self.killer is not None and self.killer.fired.is_set()

    @contextlib.asynccontextmanager
    async def open(self, bonds_path: Path, name: str) -> AsyncIterator[Phone]:
        """A started phone on the next controller, stopped (links dropped) on the way out."""
        bonds = open_keystore_file(bonds_path)
        try:
            async with open_hci(f"tcp-client:127.0.0.1:{next(self.ports)}") as endpoints:
                phone = Phone(
                    endpoints,
                    bonds,
                    identity=load_identity(bonds, name),
                    pairing_timeout=PAIRING_TIMEOUT,
                )
                phone.device.on(phone.device.EVENT_CONNECTION, self._watch)
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await phone.start()
                self.live.append(phone)
                try:
                    yield phone
                finally:
                    self.live.remove(phone)
                    # A link to a killed daemon never closes; the restarted daemon's HCI Reset
                    # drops it (radio/virtual.py), so after the kill the phone just powers off.
                    closing = phone.device.power_off() if self.killed() else phone.stop()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(closing, CLOSE_TIMEOUT)
        finally:
            bonds.close()

    def _watch(self, connection: Connection) -> None:
        running = False

        def started() -> None:
            nonlocal running
            if not running:
                running = True
                self.witness.pairings_running += 1

        def ended() -> None:
            nonlocal running
            if running:
                running = False
                self.witness.pairings_running -= 1

        def failed(reason: int) -> None:
            if not self.killed():
                if reason in WRONG_PIN_CODES:
                    self.witness.wrong_pins += 1
                if reason == smp.ErrorCode.REPEATED_ATTEMPTS:
                    self.witness.locked_refusals.append(time.time())
            if self.killer is not None and reason in (
                *WRONG_PIN_CODES,
                smp.ErrorCode.REPEATED_ATTEMPTS,
            ):
                self.killer.observe(KillMoment.REFUSAL)
            ended()

        def paired(_keys: Any) -> None:
            if self.killer is not None:
                self.killer.observe(KillMoment.BONDED)
            ended()

        connection.on(connection.EVENT_PAIRING_START, started)
        connection.on(connection.EVENT_PAIRING_FAILURE, failed)
        connection.on(connection.EVENT_PAIRING, paired)
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: ended())

    async def settle(self) -> None:
        """Let connects in flight complete (the dead daemon's controller still advertises)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while any(p.device.is_le_connecting for p in self.live) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def confirm(self, phone: Phone) -> None:
        """The charger just served a protected read to `phone`: its bond is proven."""
        keys = await phone.bonds.get(self.chain.address)
        if keys is None or keys.ltk is None or self.killed():
            return
        identity = load_identity(phone.bonds)
        self.witness.bond_changes[identity.address] = ConfirmedBond(
            identity.address, keys.ltk.value.hex(), identity.irk.hex()
        )


def link_dropped(error: BaseException) -> bool:
    """Whether `error` is a phone operation that failed, rather than our task being cancelled.

    Bumble ends a link's pending operation with CancelledError when the link drops (an
    encryption with a stale LTK ends in a MIC failure and does this), though nobody cancelled
    the task that waits on it.
    """
    if not isinstance(error, asyncio.CancelledError):
        return isinstance(error, Exception)
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


def describe(error: BaseException) -> str:
    return f"{type(error).__name__} {error}".strip()


async def stop_workload(task: asyncio.Task[None], index: int) -> None:
    """Cancel the workload and wait for it, cancelling again if a cancellation was lost.

    Python 3.11's `asyncio.wait_for` drops a cancellation that arrives as its inner future
    completes (the phone's `pair()` finishing at the very kill), and the step would then wait
    for a dead charger until its timeout.
    """
    deadline = time.monotonic() + STEP_TIMEOUT
    while not task.done():
        if time.monotonic() > deadline:
            raise CrashLoopError(f"the workload of iteration {index} did not stop after the kill")
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


def wrong_pin(rng: random.Random, right: Pin) -> Pin:
    """A strong PIN other than `right`: a guess the phone does not refuse as weak."""
    while True:
        candidate = f"{rng.randrange(1, 1_000_000):06d}"
        if candidate != right.digits and weakness(candidate) is None:
            return Pin(candidate)


class Workload:
    """The seeded steps of one iteration, run until the daemon dies under them."""

    def __init__(self, phones: Phones, chain: Chain, rng: random.Random) -> None:
        self.phones = phones
        self.chain = chain
        self.rng = rng
        self.steps_done = 0

    async def run(self, plan: list[Step]) -> None:
        phones = self.phones
        try:
            async with (
                phones.open(self.chain.attacker_bonds, "attacker") as attacker,
                phones.open(self.chain.owner_bonds, "owner") as owner,
            ):
                for step in plan:
                    await self._guarded(step, attacker, owner)
                    if phones.killed():
                        return
                    self.steps_done += 1
        except (Exception, asyncio.CancelledError) as error:  # a phone that did not power on
            if not link_dropped(error):
                raise
            if not phones.killed():
                phones.witness.anomalies.append(f"phones: {describe(error)}")

    async def _guarded(self, step: Step, attacker: Phone, owner: Phone) -> None:
        """One step, bounded in time; its failure is an anomaly unless the daemon is dead."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await self._step(step, attacker, owner)
        except (Exception, asyncio.CancelledError) as error:  # every failure is data
            if not link_dropped(error):
                raise
            if not self.phones.killed():
                self.phones.witness.anomalies.append(f"{step}: {describe(error)}")

    async def _step(self, step: Step, attacker: Phone, owner: Phone) -> None:
        chain = self.chain
        if step is Step.WRONG_PIN:
            pin = wrong_pin(self.rng, current_pin(chain.state))
            with contextlib.suppress(WrongPin, ChargerLocked):
                link = await attacker.connect(chain.serial, pin)
                self.phones.witness.wrong_pins_accepted += 1
                await link.disconnect()
                await attacker.forget(chain.address)
        elif step is Step.PAIR_NEW:
            chain.guests += 1
            bonds = chain.directory / f"guest{chain.guests}-bonds.db"
            async with self.phones.open(bonds, f"guest{chain.guests}") as guest:
                await self._pair(guest)
        elif step is Step.REPAIR:
            await owner.forget(chain.address)
            self.phones.witness.bond_changes[load_identity(owner.bonds).address] = None
            await self._pair(owner)
        elif await owner.bonds.get(chain.address) is None:
            await self._pair(owner)  # RECONNECT without a bond yet: pair first
        else:
            link = await owner.connect(chain.serial)
            await link.status()
            await self.phones.confirm(owner)
            await link.disconnect()

    async def _pair(self, phone: Phone) -> None:
        with contextlib.suppress(ChargerLocked):
            link = await phone.connect(self.chain.serial, current_pin(self.chain.state))
            await link.status()  # protected: the charger holds our bond
            await self.phones.confirm(phone)
            await link.disconnect()


# ---------------------------------------------------------------------------------- the loop


@dataclass
class Totals:
    """Sums over the iterations, for the table and the JSON report."""

    iterations: int = 0
    chargers: int = 0
    kills_during_pairing: int = 0
    kills_at_refusal: int = 0
    kills_at_bonded: int = 0
    kills_during_lockout: int = 0
    kills_idle: int = 0
    bonds_checked: int = 0
    confirmed_bonds_checked: int = 0
    failures_recorded: int = 0
    failures_observed: int = 0
    locked_refusals_observed: int = 0
    locks_checked_after_restart: int = 0
    reconnects_tried: int = 0
    reconnects_ok: int = 0
    unconfirmed_bonds_lost: int = 0
    restarts_ok: int = 0
    anomalies: int = 0
    violations: int = 0


class CrashLoop:
    """The radio, one daemon child at a time, and the iterations."""

    def __init__(self, directory: Path, rng: random.Random) -> None:
        self.directory = directory
        self.rng = rng
        self.charger_port, *phone_ports = free_ports(1 + PHONE_CONTROLLERS)
        self.ports = [self.charger_port, *phone_ports]
        self.phone_ports = itertools.cycle(phone_ports)
        self.radio: Service | None = None
        self.daemon: Service | None = None
        self.chain: Chain | None = None
        self.chains = 0
        self.totals = Totals()

    def close(self) -> None:
        """Kill every child still running (the `finally` of the run)."""
        for service in (self.daemon, self.radio):
            if service is not None:
                service.kill()
        self.daemon = self.radio = None

    async def run(self, iterations: int) -> list[dict[str, Any]]:
        self.radio = await asyncio.to_thread(start_radio, self.ports, self.directory / "radio.log")
        records = []
        for index in range(1, iterations + 1):
            records.append(await self.iteration(index))
        if self.daemon is not None:
            late = await self._retire(self.daemon)
            self.daemon = None
            records[-1]["violations"].extend(late)
            self.totals.violations += len(late)
        return records

    @staticmethod
    async def _retire(daemon: Service) -> list[str]:
        """Stop a charger's daemon for good with SIGTERM, as its service manager would."""
        try:
            code = await asyncio.to_thread(daemon.stop)
        except subprocess.TimeoutExpired:
            code = None
        await asyncio.to_thread(daemon.kill)
        if code == 0:
            return []
        return [
            f"the daemon did not stop cleanly on SIGTERM (exit {code}):\n{daemon.stderr()[-2000:]}"
        ]

    async def _new_chain(self) -> Chain:
        self.chains += 1
        directory = self.directory / f"charger{self.chains:03d}"
        directory.mkdir()
        serial = f"CP-CRASH-{self.chains:03d}"
        provisioned = provision_charger(
            directory / "charger.db",
            serial=serial,
            model=MODEL,
            firmware=FIRMWARE,
            produced=PRODUCED,
            secret=self.rng.randbytes(32),
            profile=PROFILE,
        )
        chain = Chain(
            self.chains,
            directory,
            serial,
            provisioned.identity.address,
            self.rng.randint(*CHAIN_LENGTH),
        )
        self.daemon = await self._start_daemon(chain)
        self.totals.chargers += 1
        return chain

    async def _start_daemon(self, chain: Chain) -> Service:
        transport = f"tcp-client:127.0.0.1:{self.charger_port}"
        daemon, fields = await asyncio.to_thread(
            start_charger, chain.state, transport, chain.directory / "charger.log"
        )
        if fields.get("address") != chain.address:
            daemon.kill()
            raise ServiceError(f"the daemon announced {fields}, expected {chain.address}")
        return daemon

    def _plan(self, locked: bool) -> tuple[list[Step], KillMoment, float, int]:
        """The steps, the kill moment, the delay of a random kill and the event count of a
        triggered one. While locked no pairing completes: a kill as a phone finishes pairing
        becomes one as a phone is refused."""
        steps = list(STEP_WEIGHTS)
        plan = self.rng.choices(steps, [STEP_WEIGHTS[s] for s in steps], k=PLAN_LENGTH)
        moments = list(KILL_WEIGHTS)
        moment = self.rng.choices(moments, [KILL_WEIGHTS[m] for m in moments])[0]
        if locked and moment is KillMoment.BONDED:
            moment = KillMoment.REFUSAL
        delay = self.rng.uniform(0.0, MAX_KILL_DELAY)
        wanted = {
            KillMoment.REFUSAL: {Step.WRONG_PIN},
            KillMoment.BONDED: {Step.PAIR_NEW, Step.REPAIR},
        }
        if moment in wanted and not wanted[moment] & set(plan):
            plan[self.rng.randrange(PLAN_LENGTH)] = sorted(wanted[moment])[0]
        chosen = sum(step in wanted.get(moment, set()) for step in plan)
        target = self.rng.randint(1, max(chosen, 1))
        return plan, moment, delay, target

    async def iteration(self, index: int) -> dict[str, Any]:
        """One workload, one kill -9, the checks with the daemon down, the restart."""
        if self.chain is None or self.daemon is None:
            self.chain = await self._new_chain()
        chain, daemon = self.chain, self.daemon
        assert daemon is not None
        before = snapshot(chain.state)
        locked = lockout.is_locked(PROFILES[PROFILE].lockout, before.lockout, time.time())
        plan, moment, delay, target = self._plan(locked)
        witness = Witness()
        killer = Killer(daemon, moment, target, witness)
        workload = Workload(Phones(self.phone_ports, chain, witness, killer), chain, self.rng)
        timing = await self._kill_during(workload, plan, killer, delay, index)
        self.daemon = None

        confirmed = self._confirmed(chain, witness)
        check = check_state(chain.state, before, witness, confirmed)
        chain.confirmed = confirmed
        violations = list(check.violations)
        if witness.wrong_pins_accepted:
            violations.append(f"{witness.wrong_pins_accepted} pairings with a wrong PIN succeeded")
        if killer.died_on_its_own:
            violations.append(f"the daemon had exited before the kill:\n{daemon.stderr()[-2000:]}")
        after = check.after
        record: dict[str, Any] = {
            "iteration": index,
            "charger": chain.serial,
            "plan": [str(step) for step in plan],
            "kill_moment": str(moment),
            "kill_delay_s": round(delay, 3) if moment is KillMoment.RANDOM else None,
            "kill_target": None if moment is KillMoment.RANDOM else target,
            "killed": killer.how,
            **timing,
            "steps_done": workload.steps_done,
            "during_pairing": killer.during_pairing,
            "during_lockout": after is not None
            and lockout.is_locked(PROFILES[PROFILE].lockout, after.lockout, killer.killed_at),
            "seen": {
                "wrong_pins": witness.wrong_pins,
                "locked_refusals": len(witness.locked_refusals),
                "confirmed_bonds": sum(v is not None for v in witness.bond_changes.values()),
            },
            "before": before.to_dict(),
            "after": None if after is None else after.to_dict(),
            "failures_recorded": None if after is None else after.failures - before.failures,
            "failures_observed": witness.wrong_pins,
            "bonds_checked": check.bonds_checked,
            "confirmed_bonds_checked": len(confirmed),
            "anomalies": witness.anomalies,
        }
        if after is not None:
            record.update(await self._restart_and_serve(chain, after, violations))
        chain.iterations_left -= 1
        if self.daemon is not None and (chain.iterations_left <= 0 or violations):
            violations.extend(await self._retire(self.daemon))
            self.daemon = None
        if self.daemon is None:
            self.chain = None
        record["violations"] = violations
        self._count(record, killer, witness, check)
        return record

    async def _kill_during(
        self, workload: Workload, plan: list[Step], killer: Killer, delay: float, index: int
    ) -> dict[str, float]:
        """Run the workload until the kill, then stop it and reap the daemon."""
        started = time.time()
        task = asyncio.create_task(workload.run(plan))
        fired = asyncio.create_task(killer.fired.wait())
        timeout = delay if killer.moment is KillMoment.RANDOM else None
        await asyncio.wait({task, fired}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        killer.fire("after a delay" if not task.done() else AFTER_WORKLOAD)
        fired.cancel()
        await workload.phones.settle()
        await stop_workload(task, index)
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # a bug of the lab, not a finding
        await asyncio.to_thread(killer.daemon.kill)
        return {
            "killed_after_s": round(killer.killed_at - started, 3),
            "teardown_s": round(time.time() - killer.killed_at, 3),
        }

    @staticmethod
    def _confirmed(chain: Chain, witness: Witness) -> dict[str, ConfirmedBond]:
        confirmed = dict(chain.confirmed)
        for address, bond in witness.bond_changes.items():
            if bond is None:
                confirmed.pop(address, None)
            else:
                confirmed[address] = bond
        return confirmed

    async def _restart_and_serve(
        self, chain: Chain, after: StateSnapshot, violations: list[str]
    ) -> dict[str, Any]:
        """Restart on the same file: info readable, bonded phones reconnect, a lock refuses."""
        started = time.monotonic()
        try:
            self.daemon = await self._start_daemon(chain)
        except ServiceError as error:
            violations.append(f"the daemon did not restart on its state: {error}")
            return {"restart_s": None}
        result: dict[str, Any] = {"restart_s": round(time.monotonic() - started, 3)}
        serving = time.monotonic()
        witness = Witness()
        phones = Phones(self.phone_ports, chain, witness, None)
        reconnects: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                async with phones.open(chain.attacker_bonds, "attacker") as attacker:
                    info = await attacker.read_info(chain.serial)
                    if info.epoch != after.epoch:
                        violations.append(f"info says epoch {info.epoch}, the file {after.epoch}")
                    lock = await self._check_lock(attacker, chain, after, info.locked)
            result["lock_after_restart"] = lock
            if lock not in ("refused", "not locked"):
                violations.append(f"a lock in force before the kill: {lock}")
            for bonds in await self._bonded_phone_files(chain):
                reconnects.append(await self._reconnect(phones, chain, bonds, violations))
        except (Exception, asyncio.CancelledError) as error:  # the restarted charger did not serve
            if not link_dropped(error):
                raise
            violations.append(f"the restarted daemon did not serve: {describe(error)}")
        chain.confirmed = self._confirmed(chain, witness)
        result["reconnects"] = reconnects
        result["serve_s"] = round(time.monotonic() - serving, 3)
        return result

    async def _check_lock(
        self, attacker: Phone, chain: Chain, after: StateSnapshot, advertised: bool
    ) -> str:
        """A lock with LOCK_MARGIN left to run must be on the info and refuse the right PIN."""
        until = after.lockout.locked_until
        if until is None or until - time.time() < LOCK_MARGIN:
            return "not locked"
        if not advertised:
            return "missing from the info characteristic"
        try:
            link = await attacker.connect(chain.serial, current_pin(chain.state))
        except ChargerLocked:
            return "refused"
        await link.disconnect()
        await attacker.forget(chain.address)
        return "served a pairing"

    async def _bonded_phone_files(self, chain: Chain) -> list[Path]:
        """The owner and the two newest guests of this charger, if their phone holds a bond."""
        newest = [chain.directory / f"guest{n}-bonds.db" for n in range(chain.guests, 0, -1)]
        found = []
        for path in [chain.owner_bonds, *newest[:2]]:
            if not path.exists():
                continue
            bonds = open_keystore_file(path)
            try:
                if await bonds.get(chain.address) is not None:
                    found.append(path)
            finally:
                bonds.close()
        return found

    async def _reconnect(
        self, phones: Phones, chain: Chain, bonds: Path, violations: list[str]
    ) -> dict[str, Any]:
        """A bonded phone reconnects without PIN and reads the status (protected)."""
        async with phones.open(bonds, bonds.stem) as phone:
            address = load_identity(phone.bonds).address
            confirmed = address in chain.confirmed
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    link = await phone.connect(chain.serial)
                    await link.status()
            except (Exception, asyncio.CancelledError) as error:
                if not link_dropped(error):
                    raise
                await phone.forget(chain.address)  # what the app does: pair again next time
                chain.confirmed.pop(address, None)
                if confirmed:
                    violations.append(f"bonded phone {address} could not reconnect: {error}")
                return {
                    "phone": address,
                    "confirmed": confirmed,
                    "ok": False,
                    "error": describe(error),
                }
            await phones.confirm(phone)
            await link.disconnect()
            return {"phone": address, "confirmed": confirmed, "ok": True}

    def _count(
        self, record: dict[str, Any], killer: Killer, witness: Witness, check: StateCheck
    ) -> None:
        totals = self.totals
        totals.iterations += 1
        totals.kills_during_pairing += killer.during_pairing
        totals.kills_at_refusal += killer.triggered and killer.moment is KillMoment.REFUSAL
        totals.kills_at_bonded += killer.triggered and killer.moment is KillMoment.BONDED
        totals.kills_during_lockout += bool(record["during_lockout"])
        totals.kills_idle += killer.how == AFTER_WORKLOAD
        totals.bonds_checked += check.bonds_checked
        totals.confirmed_bonds_checked += record["confirmed_bonds_checked"]
        totals.failures_recorded += record["failures_recorded"] or 0
        totals.failures_observed += witness.wrong_pins
        totals.locked_refusals_observed += len(witness.locked_refusals)
        totals.locks_checked_after_restart += record.get("lock_after_restart") == "refused"
        reconnects = record.get("reconnects", [])
        totals.reconnects_tried += len(reconnects)
        totals.reconnects_ok += sum(r["ok"] for r in reconnects)
        totals.unconfirmed_bonds_lost += sum(not r["ok"] and not r["confirmed"] for r in reconnects)
        totals.restarts_ok += record.get("restart_s") is not None
        totals.anomalies += len(witness.anomalies)
        totals.violations += len(record["violations"])


def command_line(iterations: int, seed: int, json_path: Path | None) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = [f"chargepin lab crash-loop --iterations {iterations} --seed {seed}"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    return " ".join(parts)


def _quiet_logs() -> None:
    """Failed pairings and dead peers are the point here: keep Bumble's warnings out."""
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    logging.getLogger("chargepin").setLevel(logging.ERROR)


async def crash_loop_report(iterations: int, seed: int, command: str = "") -> dict[str, Any]:
    """Run the loop and return the report (what `--json` writes).

    The state files live in a temporary directory, deleted after a clean run and kept (its path
    in the report) when a check failed, for inspection.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    _quiet_logs()
    directory = Path(tempfile.mkdtemp(prefix="chargepin-crash-loop-"))
    loop = CrashLoop(directory, random.Random(seed))
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    try:
        records = await loop.run(iterations)
    finally:
        loop.close()
    totals = loop.totals
    passed = totals.violations == 0
    if passed:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "command": command,
        "started": started_at,
        "machine": machine_info(Path(tempfile.gettempdir())),
        "seed": seed,
        "profile": PROFILE,
        "lockout": PROFILES[PROFILE].lockout.to_dict(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "kept_directory": None if passed else str(directory),
        "iterations": records,
        "totals": vars(totals),
        "pass": passed,
    }


def summary_table(report: dict[str, Any]) -> Table:
    totals = report["totals"]
    table = Table(title=f"chargepin lab crash-loop (seed {report['seed']}, {PROFILE} profile)")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    rows = [
        ("iterations (kill -9, check, restart)", totals["iterations"]),
        ("chargers (state files)", totals["chargers"]),
        ("kills during a pairing", totals["kills_during_pairing"]),
        ("  as the phone saw its refusal", totals["kills_at_refusal"]),
        ("  as the phone finished pairing", totals["kills_at_bonded"]),
        ("kills during a lockout", totals["kills_during_lockout"]),
        ("kills after the workload (idle)", totals["kills_idle"]),
        ("bonds checked (rows after kills)", totals["bonds_checked"]),
        ("confirmed bonds checked", totals["confirmed_bonds_checked"]),
        (
            "failures recorded / observed",
            f"{totals['failures_recorded']} / {totals['failures_observed']}",
        ),
        ("lock refusals observed", totals["locked_refusals_observed"]),
        ("locks refusing after restart", totals["locks_checked_after_restart"]),
        (
            "bonded reconnects after restart ok / tried",
            f"{totals['reconnects_ok']} / {totals['reconnects_tried']}",
        ),
        ("  unconfirmed bonds lost (allowed)", totals["unconfirmed_bonds_lost"]),
        ("restarts serving", totals["restarts_ok"]),
        ("anomalies (phone errors, daemon alive)", totals["anomalies"]),
        ("violations", totals["violations"]),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    verdict = "pass" if report["pass"] else "FAIL"
    table.add_row("[bold]verdict[/bold]", f"[bold]{verdict}[/bold]")
    table.caption = f"{report['wall_seconds']} s"
    return table


def run_crash_loop(iterations: int, seed: int, json_path: Path | None) -> int:
    """0 when no kill broke a promise of the state file, 1 otherwise (violations listed)."""
    report = asyncio.run(
        crash_loop_report(iterations, seed, command_line(iterations, seed, json_path))
    )
    console = Console()
    console.print(summary_table(report))
    for record in report["iterations"]:
        for violation in record["violations"]:
            console.print(f"iteration {record['iteration']}: {violation}", markup=False)
    if report["kept_directory"]:
        console.print(f"state files kept in {report['kept_directory']}", markup=False)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"report written to {json_path}", markup=False)
    return 0 if report["pass"] else 1
