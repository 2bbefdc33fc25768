"""`chargepin demo`: the whole PIN story on the real Bluetooth stack and a virtual radio.

Everything that runs is the real thing: the charger daemon, the phone client, the chargers'
SQLite state in a temporary directory and Bumble's controllers on one virtual radio. Two
stand-ins, both said on screen: `OwnerAuthority` plays the fleet service (it shows the PIN of an
epoch and issues owner tickets from the factory secret), and the chargers run on a fake clock so
that the 5-minute lockout is shown by moving time forward instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chargepin.charger.daemon import RESULT_READ_GRACE, ChargerDaemon
from chargepin.clock import FakeClock
from chargepin.core.epochs import pin_fingerprint
from chargepin.core.errors import format_duration
from chargepin.core.pin import Pin, generate_pin
from chargepin.core.protocol import ChargerInfo
from chargepin.core.tickets import Action, verify_receipt
from chargepin.lab.testbed import ChargerSpec, OwnerAuthority, Testbed
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import ChargerLocked, PhoneError, PinNeeded, WrongPin

MANDATORY = ChargerSpec(serial="CP-0001", model="Pulsar Max", firmware="6.11.2")
OPTIONAL = ChargerSpec(serial="CP-0002", model="Pulsar Plus", firmware="6.8.0")
STRANGER_SEED = 2025  # the stranger's guesses are random, but the same on every run


class DemoFailed(Exception):
    """The charger or phone did something the story says it must not do."""


@dataclass
class Step:
    """One step of the story: what we say, what we saw, how it ended, how long it took."""

    number: int
    title: str
    narration: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    outcome: str = ""
    ms: float = 0.0

    def fact(self, label: str, value: object) -> None:
        """Record an observed fact, shown as `label: value` in the step's panel."""
        self.facts.append((label, str(value)))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _epoch_pin(authority: OwnerAuthority, info: ChargerInfo) -> Pin:
    """What the app shows on Charger Info: the fleet's PIN for the charger's current epoch."""
    return authority.pin_of_epoch(info.epoch)


def _typo(pin: Pin) -> Pin:
    """The PIN with two neighbouring digits swapped (or the last one off by one)."""
    digits = list(pin.digits)
    digits[2], digits[3] = digits[3], digits[2]
    typo = "".join(digits)
    if typo == pin.digits:
        typo = typo[:5] + str((int(typo[5]) + 1) % 10)
    return Pin(typo)


def _guess(rng: random.Random, right: Pin) -> Pin:
    """A stranger's guess: any strong PIN except, for the story's sake, the right one."""
    while True:
        guess = generate_pin(rng)
        if guess != right:
            return guess


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailed(what)


async def _wait_for_disconnection(link: ChargerLink, timeout: float) -> float:
    """Seconds until the charger drops `link` (bounded by `timeout`)."""
    started = time.perf_counter()
    if not await link.wait_closed(timeout):
        raise DemoFailed(
            f"the charger did not interrupt the link within {timeout:.0f} s after the change"
        )
    return time.perf_counter() - started


class Demo:
    """The story, step by step, on one testbed; each step prints a panel when it ends."""

    def __init__(self, console: Console, bed: Testbed, clock: FakeClock) -> None:
        self.console = console
        self.bed = bed
        self.clock = clock
        self.steps: list[Step] = []
        self.current: Step | None = None
        self.charger: ChargerDaemon | None = None
        self.phones: dict[str, Phone] = {}

    # ---------------------------------------------------------------- presentation

    @contextlib.contextmanager
    def step(self, title: str, narration: str) -> Iterator[Step]:
        """Time one step and print its panel once it succeeded."""
        step = Step(len(self.steps) + 1, title, narration)
        self.current = step
        started = time.perf_counter()
        yield step
        step.ms = (time.perf_counter() - started) * 1000
        self.steps.append(step)
        self.current = None
        self.console.print(self._panel(step))

    def _panel(self, step: Step) -> Panel:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="cyan", no_wrap=True)
        facts.add_column()
        for label, value in step.facts:
            facts.add_row(escape(label), escape(value))
        outcome = Text.assemble(("=> ", "bold green"), (step.outcome, "green"))
        body = Group(Text(step.narration, style="italic"), Text(), facts, Text(), outcome)
        return Panel(
            body,
            title=f"[bold]{step.number}. {escape(step.title)}[/bold]",
            title_align="left",
            subtitle=f"{step.ms:.0f} ms",
            subtitle_align="right",
            border_style="blue",
        )

    def summary(self, total: float) -> Table:
        table = Table(title="chargepin demo: summary", title_style="bold")
        table.add_column("#", justify="right")
        table.add_column("step")
        table.add_column("outcome")
        table.add_column("ms", justify="right")
        for step in self.steps:
            table.add_row(
                str(step.number), escape(step.title), escape(step.outcome), f"{step.ms:.0f}"
            )
        table.add_section()
        table.add_row("", "total wall time", "", f"{total * 1000:.0f}", style="bold")
        return table

    # ---------------------------------------------------------------- helpers

    async def phone(self, name: str) -> Phone:
        phone = self.phones[name] = await self.bed.phone(name)
        return phone

    def authority(self, daemon: ChargerDaemon) -> OwnerAuthority:
        return self.bed.authority(daemon)

    # ---------------------------------------------------------------- the story

    async def run(self) -> None:
        owner_pin = await self.factory_and_first_pairing()
        await self.bonded_reconnect()
        await self.restart()
        await self.second_phone()
        await self.wrong_then_right()
        await self.lockout(owner_pin)
        await self.optional_charger()
        await self.change_pin()

    async def factory_and_first_pairing(self) -> Pin:
        with self.step(
            "Factory: a Pulsar Max on firmware 6.11.2",
            "The factory provisions the charger (hardened profile) and shares its secret with "
            "the fleet service only. The owner's app reads the open info and shows the PIN.",
        ) as step:
            self.charger = await self.bed.charger(MANDATORY, name="charger")
            owner = await self.phone("owner")
            info = await owner.read_info(MANDATORY.serial)
            _expect(info.pin_enabled, "the 6.11 charger must have its PIN on")
            pin = _epoch_pin(self.authority(self.charger), info)
            step.fact("charger", f"{info.model} {info.serial}, firmware {info.firmware}")
            step.fact("address", self.charger.address)
            step.fact("PIN class", f"{info.pin_mode.name.lower()} (firmware 6.11 or higher)")
            step.fact("profile", self.charger.profile.name)
            step.fact("PIN epoch", info.epoch)
            step.fact("Charger Info shows PIN", pin)
            step.outcome = f"provisioned; PIN {pin} on Charger Info"
        with self.step(
            "The owner's phone pairs with the PIN",
            "First connection from a new phone: LE Secure Connections passkey entry, the owner "
            "types the PIN from Charger Info.",
        ) as step:
            started = time.perf_counter()
            link = await owner.connect(MANDATORY.serial, pin=pin)
            paired = time.perf_counter() - started
            _expect(link.paired_now, "a new phone must pair")
            status = await link.status()
            charging = await link.start_charging()
            await link.disconnect()
            step.fact("phone", owner.device.random_address)
            step.fact("paired with", f"{link.address} using PIN {pin} in {_ms(paired)}")
            step.fact("status", f"{status.state.name.lower()}, limit {status.current_limit} A")
            step.fact("after start", f"{charging.state.name.lower()}")
            step.outcome = f"paired with the PIN in {_ms(paired)}; charging started"
        return pin

    async def bonded_reconnect(self) -> None:
        with self.step(
            "Bonded reconnect, no PIN",
            "The phone is bonded now: it reconnects with its keys and is never asked again.",
        ) as step:
            owner = self.phones["owner"]
            started = time.perf_counter()
            link = await owner.connect(MANDATORY.serial)
            took = time.perf_counter() - started
            _expect(not link.paired_now, "a bonded phone must not pair again")
            status = await link.status()
            await link.disconnect()
            step.fact("paired_now", link.paired_now)
            step.fact("secured with the bond in", _ms(took))
            step.fact("status", status.state.name.lower())
            step.outcome = f"reconnected without the PIN in {_ms(took)}"

    async def restart(self) -> None:
        with self.step(
            "Daemon restart: bonds are kept",
            "The charger reboots: the daemon stops and starts again on the same SQLite state.",
        ) as step:
            assert self.charger is not None
            started = time.perf_counter()
            self.charger = await self.bed.restart(self.charger, name="charger")
            rebooted = time.perf_counter() - started
            link = await self.phones["owner"].connect(MANDATORY.serial)
            _expect(not link.paired_now, "the bond must survive a restart")
            await link.status()
            await link.disconnect()
            step.fact("restart took", _ms(rebooted))
            step.fact("bonds on the charger", len(await self.charger.store.keystore.get_all()))
            step.fact("owner reconnects", "with the bond, no PIN")
            step.outcome = "restarted; the owner reconnects without the PIN"

    async def second_phone(self) -> None:
        with self.step(
            "A second phone: an invited user",
            "The owner invited a family member; their app shows the same PIN on Charger Info.",
        ) as step:
            assert self.charger is not None
            invited = await self.phone("invited")
            info = await invited.read_info(MANDATORY.serial)
            pin = _epoch_pin(self.authority(self.charger), info)
            started = time.perf_counter()
            link = await invited.connect(MANDATORY.serial, pin=pin)
            took = time.perf_counter() - started
            _expect(link.paired_now, "the invited phone must pair")
            await link.status()
            await link.disconnect()
            step.fact("phone", invited.device.random_address)
            step.fact("PIN shown", f"{pin} (epoch {info.epoch})")
            step.outcome = f"invited phone paired in {_ms(took)}"

    async def wrong_then_right(self) -> None:
        with self.step(
            "A wrong PIN, then the right one",
            "A visitor's phone types the PIN with two digits swapped. Hardened profile: the "
            "failure moves the charger to the next PIN epoch, so whatever bits the attempt "
            "leaked about the old PIN are worthless.",
        ) as step:
            assert self.charger is not None
            authority = self.authority(self.charger)
            visitor = await self.phone("visitor")
            before = await visitor.read_info(MANDATORY.serial)
            right = _epoch_pin(authority, before)
            typed = _typo(right)
            try:
                await visitor.connect(MANDATORY.serial, pin=typed)
            except WrongPin as error:
                wrong = error
            else:
                raise DemoFailed("a wrong PIN must not pair")
            _expect(wrong.epoch == before.epoch + 1, "a wrong PIN must move to the next epoch")
            shown = authority.pin_of_epoch(wrong.epoch)
            started = time.perf_counter()
            link = await visitor.connect(MANDATORY.serial, pin=shown)
            took = time.perf_counter() - started
            _expect(link.paired_now, "the retry must pair")
            await link.disconnect()
            step.fact("typed", f"{typed} (the PIN was {right}, epoch {before.epoch})")
            step.fact("charger said", f"WrongPin: {wrong}")
            step.fact("troubleshooting shows", f"{shown} (epoch {wrong.epoch})")
            step.fact("retry", f"paired in {_ms(took)}")
            step.outcome = f"wrong PIN refused, epoch {before.epoch} -> {wrong.epoch}; retry paired"

    async def lockout(self, owner_pin: Pin) -> None:
        assert self.charger is not None
        config = self.charger.profile.lockout
        with self.step(
            "Brute force: 5 wrong PINs lock the charger",
            "Durations are compressed: the charger runs on a fake clock that this demo moves "
            f"forward instead of waiting. Rule: {config.failures} failures within "
            f"{format_duration(config.window)} lock new pairings for "
            f"{format_duration(config.duration)}.",
        ) as step:
            authority = self.authority(self.charger)
            # The visitor's failure is still in the sliding window: let it age out first.
            self.clock.advance(config.window + 1)
            step.fact("fake clock", f"+{format_duration(config.window + 1)} (window cleared)")
            stranger = await self.phone("stranger")
            rng = random.Random(STRANGER_SEED)
            epoch = (await stranger.read_info(MANDATORY.serial)).epoch
            locked_for = 0.0
            for attempt in range(1, config.failures + 1):
                guess = _guess(rng, authority.pin_of_epoch(epoch))
                started = time.perf_counter()
                try:
                    await stranger.connect(MANDATORY.serial, pin=guess)
                except WrongPin as error:
                    took = time.perf_counter() - started
                    locked = (
                        f", locked for {format_duration(error.locked_for)}"
                        if error.locked_for
                        else ""
                    )
                    step.fact(
                        f"guess {attempt}",
                        f"{guess}: WrongPin, epoch {epoch} -> {error.epoch}{locked} ({_ms(took)})",
                    )
                    epoch, locked_for = error.epoch, error.locked_for
                else:
                    raise DemoFailed("a stranger's guess must not pair") from None
            _expect(locked_for > 0, f"{config.failures} wrong PINs must lock the charger")
            step.outcome = (
                f"locked for {format_duration(locked_for)} after {config.failures} wrong PINs"
            )

        with self.step(
            "During the lockout",
            "Another attempt is refused before any PIN round (SMP 0x09 Repeated Attempts); "
            "the hardened lock covers new pairings only, so the owner's bonded phone is served.",
        ) as step:
            guess = _guess(rng, authority.pin_of_epoch(epoch))
            try:
                await stranger.connect(MANDATORY.serial, pin=guess)
            except ChargerLocked as error:
                refused = error
            else:
                raise DemoFailed("a pairing during the lockout must be refused")
            _expect(refused.retry_after > 0, "a locked charger must say when to retry")
            step.fact("attempt 6", f"ChargerLocked: {refused}")
            link = await self.phones["owner"].connect(MANDATORY.serial)
            _expect(not link.paired_now, "the owner's phone must use its bond")
            status = await link.status()
            await link.disconnect()
            step.fact(
                "owner's phone", f"bonded, reads status: {status.state.name.lower()} (no PIN)"
            )
            step.outcome = (
                f"stranger refused (retry in {format_duration(refused.retry_after)}); owner served"
            )

        with self.step(
            "The lock expires",
            "The fake clock moves past the retry-after time; a new phone pairs with the PIN "
            "that Charger Info shows now.",
        ) as step:
            self.clock.advance(refused.retry_after + 1)
            step.fact("fake clock", f"+{format_duration(refused.retry_after + 1)}")
            guest = await self.phone("guest")
            info = await guest.read_info(MANDATORY.serial)
            _expect(not info.locked, "the lock must be over")
            pin = _epoch_pin(authority, info)
            started = time.perf_counter()
            link = await guest.connect(MANDATORY.serial, pin=pin)
            took = time.perf_counter() - started
            _expect(link.paired_now, "pairing must work again after the lock")
            await link.disconnect()
            step.fact("Charger Info shows", f"{pin} (epoch {info.epoch}; was {owner_pin})")
            step.fact("guest's phone", f"paired in {_ms(took)}")
            step.outcome = "lock over; pairing works again"

    async def optional_charger(self) -> None:
        with self.step(
            "Optional class: the owner enables the PIN",
            "A Pulsar Plus on firmware 6.8.0: the PIN is optional and off, so phones pair with "
            "Just Works. The owner enables it with a ticket signed by the fleet service; the "
            "charger interrupts the link and the next connection needs the PIN.",
        ) as step:
            daemon = await self.bed.charger(OPTIONAL, name="charger2")
            authority = self.authority(daemon)
            owner = self.phones["owner"]
            link = await owner.connect(OPTIONAL.serial)
            _expect(link.paired_now and not link.info.pin_enabled, "Just Works while PIN is off")
            step.fact("charger", f"{OPTIONAL.model} {OPTIONAL.serial}, firmware 6.8.0")
            step.fact("PIN class", f"{link.info.pin_mode.name.lower()}, PIN off")
            step.fact("owner's phone", "paired with Just Works (no PIN)")
            started = time.perf_counter()
            ticket = await authority.authorise(link, Action.ENABLE_PIN)
            result = await link.submit_ticket(ticket)
            receipt = verify_receipt(OPTIONAL.secret, OPTIONAL.serial, result.receipt)
            _expect(receipt.pin_enabled, "the receipt must say the PIN is on")
            step.fact("ticket", f"enable_pin -> receipt verified (epoch {receipt.epoch})")
            dropped = await _wait_for_disconnection(link, RESULT_READ_GRACE + 3.0)
            step.fact("link interrupted", f"{_ms(dropped)} after the receipt")
            try:
                await owner.connect(OPTIONAL.serial)
            except PinNeeded as error:
                step.fact("reconnect, no PIN", f"PinNeeded: {error}")
            else:
                raise DemoFailed("after enabling, a connection without the PIN must fail")
            info = await owner.read_info(OPTIONAL.serial)
            pin = _epoch_pin(authority, info)
            link = await owner.connect(OPTIONAL.serial, pin=pin)
            took = time.perf_counter() - started
            _expect(link.paired_now, "the owner must pair with the new PIN")
            await link.status()
            await link.disconnect()
            step.fact("Charger Info shows", f"{pin} (epoch {info.epoch})")
            step.fact("reconnect with PIN", f"paired; {_ms(took)} from ticket to PIN bond")
            step.outcome = "PIN enabled by ticket; link interrupted; the next connection needs it"

    async def change_pin(self) -> None:
        with self.step(
            "Changing the PIN (firmware 6.11)",
            "The owner picks a new PIN on Charger Info; the fleet service seals it into a "
            "ticket, so it never crosses the air in clear. The charger's signed receipt tells "
            "the fleet the new PIN is live.",
        ) as step:
            assert self.charger is not None
            authority = self.authority(self.charger)
            new_pin = generate_pin()
            owner = self.phones["owner"]
            link = await owner.connect(MANDATORY.serial)
            ticket = await authority.authorise(link, Action.CHANGE_PIN, {"pin": new_pin.digits})
            result = await link.submit_ticket(ticket)
            await link.disconnect()
            receipt = verify_receipt(MANDATORY.secret, MANDATORY.serial, result.receipt)
            live = receipt.fingerprint == pin_fingerprint(
                MANDATORY.secret, MANDATORY.serial, new_pin
            )
            _expect(live, "the receipt's fingerprint must be the new PIN's")
            step.fact("new PIN", new_pin)
            step.fact("receipt", f"verified: {receipt.action.value}, fingerprint matches")
            for name in ("owner", "invited"):
                link = await self.phones[name].connect(MANDATORY.serial)
                _expect(not link.paired_now, f"the {name} phone must keep its bond")
                await link.status()
                await link.disconnect()
            step.fact("bonded phones", "owner and invited reconnect without the PIN")
            newcomer = await self.phone("new-phone")
            try:
                await newcomer.connect(MANDATORY.serial)
            except PinNeeded:
                step.fact("a new phone, no PIN", "PinNeeded")
            else:
                raise DemoFailed("a new phone must need the PIN")
            started = time.perf_counter()
            link = await newcomer.connect(MANDATORY.serial, pin=new_pin)
            took = time.perf_counter() - started
            _expect(link.paired_now, "the new phone must pair with the new PIN")
            await link.disconnect()
            step.fact("a new phone, new PIN", f"paired in {_ms(took)}")
            step.outcome = "PIN changed; bonds kept; new phones need the new PIN"


class _BackgroundErrors:
    """Errors the event loop caught outside the story's awaits (stack callbacks, lost tasks).

    asyncio would print them with a traceback in the middle of the story; the demo collects
    them instead and fails with one line if any occurred, so none goes unseen either.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "error in the event loop"))
        error = context.get("exception")
        if isinstance(error, BaseException):
            message = f"{message}: {_describe(error)}"
        self.messages.append(message)


async def _run(console: Console) -> None:
    background = _BackgroundErrors()
    asyncio.get_running_loop().set_exception_handler(background)
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="chargepin-demo-") as directory:
        bed = Testbed(Path(directory), clock)
        demo = Demo(console, bed, clock)
        started = time.perf_counter()
        try:
            await demo.run()
        except BaseException as error:
            with contextlib.suppress(Exception):  # the story's error is the one to report
                await bed.close()
            step = demo.current
            if step is None or not isinstance(error, Exception):
                raise  # Ctrl-C or a cancellation: not a failure of the story
            raise DemoFailed(f"step {step.number} ({step.title}): {_describe(error)}") from None
        await bed.close()
        total = time.perf_counter() - started
    if background.messages:
        raise DemoFailed(f"the Bluetooth stack failed in the background: {background.messages[0]}")
    console.print(demo.summary(total))
    console.print(
        f"[bold green]Done:[/bold green] {len(demo.steps)} steps in {total:.1f} s on the "
        "virtual radio (lockout durations compressed with a fake clock)."
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, PhoneError | DemoFailed):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def run() -> int:
    """Tell the story with Rich output; 0 when every step behaved as promised, else 1."""
    console = Console(highlight=False)
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    console.rule("[bold]chargepin demo[/bold]")
    console.print(
        "The real charger daemon and phone client on the real Bluetooth LE stack (Bumble), "
        "over a virtual radio, with SQLite state in a temporary directory. The fleet service's "
        "part (the PIN on Charger Info, owner tickets) is played from the factory secret; "
        "lockout durations are compressed with a fake clock."
    )
    try:
        asyncio.run(_run(console))
    except KeyboardInterrupt:
        console.print("[bold red]demo interrupted[/bold red]")
        return 130
    except Exception as error:
        console.print(
            f"[bold red]demo failed:[/bold red] {escape(_describe(error))}", soft_wrap=True
        )
        return 1
    return 0
