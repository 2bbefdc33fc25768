"""The crash loop's workload: seeded steps of phones on the charger, and the kill that lands in
the middle of them.

Right-PIN pairings that write a bond (a new phone, or the owner pairing again), wrong PINs that
count failures, move the epoch and cross the lockout threshold, bonded reconnects, and in a share
of the iterations one owner ticket over the owner's bonded link, as the app writes it: a guest's
phone revoked (remove_phone: the bond removed in the ticket's transaction) or the PIN changed
(change_pin: a custom PIN, or the next epoch). The phones report what their own stacks see to a
`Witness` (the oracle's input), and the `Killer` SIGKILLs the daemon after a seeded delay, the
instant a phone sees the charger refuse its PIN, the instant a phone finishes pairing, a seeded
few milliseconds after the owner's ticket goes out, or the instant its receipt comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bumble.device import Connection

from chargepin.charger.service import current_pin
from chargepin.core.attempts import Refusal
from chargepin.core.epochs import epoch_pin
from chargepin.core.errors import ChargepinError
from chargepin.core.pin import Pin, weakness
from chargepin.core.protocol import AdminResult
from chargepin.core.smp import REFUSAL_CODES, WRONG_PIN_CODES
from chargepin.core.tickets import Action, issue_ticket, seal_ticket, verify_receipt
from chargepin.lab.crash_loop.oracle import (
    CHANGE_PIN,
    FORGET_BONDS,
    REMOVE_PHONE,
    ConfirmedBond,
    OwnerChange,
    Witness,
)
from chargepin.lab.processes import Service
from chargepin.lab.security_state import SecurityState
from chargepin.phone.client import Phone
from chargepin.phone.errors import ChargerLocked, WrongPin
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file
from chargepin.radio.transport import open_hci

PAIRING_TIMEOUT = 5.0
STEP_TIMEOUT = 20.0
"""Seconds one workload step may take with the daemon alive (find, connect, pair, read)."""

CLOSE_TIMEOUT = 5.0
"""Seconds a phone gets to power on, or to hang up and power off."""

SETTLE_TIMEOUT = 1.0
"""Seconds a phone's connect in flight at the kill gets to complete before the workload is
cancelled: cancelling it would leave a pending connection in the virtual controller."""

LOCKED = REFUSAL_CODES[Refusal.LOCKED]


class Step(StrEnum):
    """One thing a phone does to the charger in the workload."""

    WRONG_PIN = "wrong_pin"  # the attacker types a wrong PIN: a failure, an epoch, maybe a lock
    PAIR_NEW = "pair_new"  # a new phone pairs with the PIN: a new bond row
    REPAIR = "repair"  # the owner forgets the charger and pairs again: its row is replaced
    RECONNECT = "reconnect"  # the owner reconnects with its bond and reads the status
    REVOKE = "revoke"  # the owner revokes a guest's phone: a remove_phone ticket
    CHANGE_PIN = "change_pin"  # the owner changes the PIN: a change_pin ticket
    FORGET = "forget_bonds"  # the owner changes the PIN and forgets every bond: forget_bonds=1


STEP_WEIGHTS = {Step.WRONG_PIN: 3, Step.PAIR_NEW: 2, Step.REPAIR: 1, Step.RECONNECT: 2}
"""The phones' steps (the owner's tickets are planned apart: OWNER_STEPS)."""

OWNER_STEPS = (Step.REVOKE, Step.CHANGE_PIN)
"""Drawn evenly; a change_pin becomes a FORGET in FORGET_SHARE of them (one more draw, only
then: a seed's revocations stay as they were)."""

FORGET_SHARE = 0.4
"""The share of change_pin tickets with forget_bonds=1 (every bond deleted, the owner's too)."""

OWNER_SHARE = 0.5
"""The share of iterations with one owner ticket among the phones' steps."""

CUSTOM_PIN_SHARE = 0.5
"""The share of change_pin tickets that set a custom PIN (the others move to the next epoch)."""


class KillMoment(StrEnum):
    """When the daemon gets SIGKILL."""

    RANDOM = "random"  # a seeded delay into the workload
    REFUSAL = "refusal"  # the instant a phone sees the charger refuse its PIN (0x04 or 0x09)
    BONDED = "bonded"  # the instant a phone finishes pairing, before the charger may have stored
    TICKET = "ticket"  # a seeded few ms after the owner's ticket went out, before its receipt
    RECEIPT = "receipt"  # the instant the owner's phone holds the charger's signed receipt


KILL_WEIGHTS = {KillMoment.RANDOM: 5, KillMoment.REFUSAL: 3, KillMoment.BONDED: 2}
"""The kill moments of every iteration (one with an owner ticket may move it: OWNER_KILLS)."""

OWNER_KILLS = {KillMoment.TICKET: 2, KillMoment.RECEIPT: 1}

MAX_TICKET_KILL_DELAY = 0.012
"""Seconds: a kill at "ticket" lands uniformly in [0, this] after the write goes out (the write,
its SYNCED transaction and the receipt's read took 4-24 ms on the virtual radio), so it comes
before the charger read the ticket, during its transaction, or after it."""


AFTER_WORKLOAD = "after the workload"
"""How a kill is described when the workload ended before its moment came (an idle daemon)."""


class CrashLoopError(ChargepinError):
    """The lab itself could not go on (not a finding about the charger)."""


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


@dataclass
class Chain:
    """One charger's life across several kills: its file, its phones and their proven bonds."""

    number: int
    directory: Path
    serial: str
    address: str
    iterations_left: int
    secret: bytes = b""
    """The charger's factory secret: the lab issues the owner's tickets (the fleet's job)."""
    confirmed: dict[str, ConfirmedBond] = field(default_factory=dict)
    guests: int = 0
    guest_bonds: dict[str, Path] = field(default_factory=dict)
    """The guests' bonds files by identity address, while no ticket revoked the phone."""
    revoking: dict[str, Path] = field(default_factory=dict)
    """The phones this workload's ticket revoked (acknowledged or not), by address."""
    revoked: list[Path] = field(default_factory=list)
    """Bonds files of the phones revoked by an acknowledged ticket or no longer bonded by the
    file: the restart checks each is refused."""
    repaired_at: dict[str, float] = field(default_factory=dict)
    """Bonds the last restart made by pairing again (Witness.paired_at of the next workload)."""

    @property
    def state(self) -> Path:
        return self.directory / "charger.db"

    @property
    def owner_bonds(self) -> Path:
        return self.directory / "owner-bonds.db"

    @property
    def attacker_bonds(self) -> Path:
        return self.directory / "attacker-bonds.db"

    def confirmed_after(self, witness: Witness) -> dict[str, ConfirmedBond]:
        """The bonds proven so far, with what the phones just saw confirmed or forgotten."""
        confirmed = dict(self.confirmed)
        for address, bond in witness.bond_changes.items():
            if bond is None:
                confirmed.pop(address, None)
            else:
                confirmed[address] = bond
        return confirmed


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
        began = 0.0

        def started() -> None:
            nonlocal running, began
            began = time.monotonic()
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
                if reason == LOCKED:
                    self.witness.locked_refusals.append(time.time())
                if reason in WRONG_PIN_CODES or reason == LOCKED:
                    self.witness.synced_at.append(began)
            if self.killer is not None and (reason in WRONG_PIN_CODES or reason == LOCKED):
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

    async def confirm(self, phone: Phone, *, paired: bool = False) -> None:
        """The charger just served a protected read to `phone`: its bond is proven. `paired`:
        the bond is the one a pairing just made (a power cut may take it back)."""
        keys = await phone.bonds.get(self.chain.address)
        if keys is None or keys.ltk is None or self.killed():
            return
        identity = load_identity(phone.bonds)
        self.witness.bond_changes[identity.address] = ConfirmedBond(
            identity.address, keys.ltk.value.hex(), identity.irk.hex()
        )
        if paired:
            self.witness.paired_at[identity.address] = time.monotonic()


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
    """The seeded steps of one iteration, run until the daemon dies under them. `owner_rng`
    draws the owner's tickets apart from `rng`, so a seed plans the phones' steps as before."""

    def __init__(
        self,
        phones: Phones,
        chain: Chain,
        rng: random.Random,
        owner_rng: random.Random | None = None,
    ) -> None:
        self.phones = phones
        self.chain = chain
        self.rng = rng
        self.owner_rng = owner_rng or rng
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
            await self._pair_guest()
        elif step in (*OWNER_STEPS, Step.FORGET):
            await self._owner_ticket(step, owner)
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

    async def _pair_guest(self) -> None:
        chain = self.chain
        chain.guests += 1
        bonds = chain.directory / f"guest{chain.guests}-bonds.db"
        async with self.phones.open(bonds, f"guest{chain.guests}") as guest:
            await self._pair(guest)
            address = load_identity(guest.bonds).address
            if self.phones.witness.bond_changes.get(address) is not None:
                chain.guest_bonds[address] = bonds

    def _revocable(self) -> str | None:
        """The newest guest whose bond the charger proved and no ticket revoked yet."""
        confirmed = self.chain.confirmed_after(self.phones.witness)
        return next((a for a in reversed(self.chain.guest_bonds) if a in confirmed), None)

    async def _owner_ticket(self, step: Step, owner: Phone) -> None:
        """The owner's app applies one ticket over its bonded link: read a challenge, write the
        ticket, read the signed receipt (ChargerLink.submit_ticket)."""
        chain, witness, killer = self.chain, self.phones.witness, self.phones.killer
        if await owner.bonds.get(chain.address) is None:
            await self._pair(owner)  # the owner's phone pairs first, as the app does
            if await owner.bonds.get(chain.address) is None:
                return  # locked out
        target = None
        if step is Step.REVOKE and (target := self._revocable()) is None:
            await self._pair_guest()  # someone to revoke
            if (target := self._revocable()) is None:
                return
        link = await owner.connect(chain.serial)
        challenge = await link.read_challenge()
        now = SecurityState.read(chain.state)  # the PIN pairing needs until the ticket applies
        if step is Step.REVOKE:
            assert target is not None
            change = OwnerChange(REMOVE_PHONE, now.pin.digits, phone=target)
            action, args = Action.REMOVE_PHONE, {"address": target.split("/")[0]}
            # The app stops using the revoked phone from the moment the owner asks.
            witness.bond_changes[target] = None
            chain.revoking[target] = chain.guest_bonds.pop(target)
        else:
            if self.owner_rng.random() < CUSTOM_PIN_SHARE:
                pin = wrong_pin(self.owner_rng, now.pin)
                args = {"pin": pin.digits}
            else:
                pin = epoch_pin(chain.secret, chain.serial, now.epoch + 1, now.generation)
                args = {"next_epoch": "1"}
            change = OwnerChange(CHANGE_PIN, now.pin.digits, new_pin=pin.digits)
            action = Action.CHANGE_PIN
            if step is Step.FORGET:
                args["forget_bonds"] = "1"
                change.action = FORGET_BONDS
                change.forgotten = {bond.address: bond.created for bond in now.bonds}
                # The guests' phones keep their old bond: the restart checks they are refused.
                for address in [a for a in chain.guest_bonds if a in change.forgotten]:
                    chain.revoking[address] = chain.guest_bonds.pop(address)
        ticket = issue_ticket(chain.serial, challenge, action, args, time.time())
        blob = seal_ticket(chain.secret, ticket)
        delay = self.owner_rng.uniform(0.0, MAX_TICKET_KILL_DELAY)
        change.sent_at = time.monotonic()
        witness.owner_changes.append(change)
        write = asyncio.create_task(link.submit_ticket(blob))
        write.add_done_callback(lambda done: self._receipt(done, change))
        if killer is not None and killer.moment is KillMoment.TICKET:
            asyncio.get_running_loop().call_later(delay, killer.observe, KillMoment.TICKET)
        try:
            await write
        finally:
            change.interrupted = self.phones.killed() and not change.acknowledged
        if self.phones.killed():
            return
        if change.action != FORGET_BONDS:
            await link.disconnect()
            return
        # The charger drops every link once the receipt is read; the owner's app, told by the
        # receipt its bond is gone, forgets the charger and pairs with the new PIN when next
        # needed. The forgotten phones are no longer proven bonded.
        with contextlib.suppress(Exception):
            await link.disconnect()
        await owner.forget(chain.address)
        for address in change.forgotten:
            witness.bond_changes[address] = None

    def _receipt(self, write: asyncio.Task[AdminResult], change: OwnerChange) -> None:
        """The write's answer came back: with the daemon alive, the owner holds its receipt."""
        if write.cancelled() or write.exception() is not None or self.phones.killed():
            return
        receipt = verify_receipt(self.chain.secret, self.chain.serial, write.result().receipt)
        change.acknowledged = True
        change.receipt_s = round(time.monotonic() - change.sent_at, 4)
        change.epoch, change.generation = receipt.epoch, receipt.generation
        self.phones.witness.synced_at.append(change.sent_at)
        if self.phones.killer is not None:
            self.phones.killer.observe(KillMoment.RECEIPT)

    async def _pair(self, phone: Phone) -> None:
        with contextlib.suppress(ChargerLocked):
            link = await phone.connect(self.chain.serial, current_pin(self.chain.state))
            await link.status()  # protected: the charger holds our bond
            await self.phones.confirm(phone, paired=True)
            await link.disconnect()
