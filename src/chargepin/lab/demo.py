"""`chargepin demo`: the whole PIN story on the real Bluetooth stack, a virtual radio and the
real fleet service.

Everything that runs is the real thing: the fleet service (the FastAPI app, its SQLite database
in a temporary file, spoken to over HTTP by the app's own client through an in-process
transport; its OCPP 2.0.1 CSMS behind a real uvicorn on 127.0.0.1, which the charger's OCPP
link reaches over a WebSocket), the factory's provisioning, the charger daemon initialised from
its provisioning bundle, the phone client with the app's fleet flows (troubleshooting, owner
actions), the chargers' SQLite state and Bumble's controllers on one virtual radio. One
stand-in, said on screen: everything runs on one fake clock, so that the 5-minute lockout is
shown by moving time forward instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import random
import re
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import segno
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chargepin.charger.daemon import RESULT_READ_GRACE, ChargerDaemon
from chargepin.charger.ocpp_station import StationConfig, StationLink
from chargepin.charger.service import factory_identity
from chargepin.clock import FakeClock
from chargepin.core.csms_link import csms_endpoint
from chargepin.core.epochs import epoch_pin
from chargepin.core.errors import format_duration
from chargepin.core.pin import Pin, generate_pin
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName
from chargepin.core.tickets import Action
from chargepin.fleet.factory import Provisioned, write_bundle
from chargepin.fleet.web.sessions import CSRF_FIELD
from chargepin.lab.attacks.common import arena
from chargepin.lab.attacks.online import BitStrategy, attack_trial
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import PASSWORD, LocalFleet
from chargepin.lab.ports import LOOPBACK
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.errors import ChargerLocked, PhoneError, PinNeeded, WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused

T = TypeVar("T")

MANDATORY = ("Pulsar Max", "6.11.2")
OPTIONAL = ("Pulsar Plus", "6.8.0")
PRODUCED = dt.date(2025, 9, 1)
PROFILE = DEFAULT_PROFILE  # `chargepin charger init`'s default
FLEET_DATABASE = "fleet.db"
OWNER, INVITED = "owner@example.com", "family@example.com"
FRIEND = "friend@example.com"
"""Invited at the end, so that the app has a live member to sign in as (the family is revoked)."""
APP_PORT = 8000
"""Where `chargepin demo --serve` keeps the app (`chargepin fleet serve`'s default port)."""
STRANGER_SEED = 2025  # the stranger's guesses are random, but the same on every run
ATTACK_SEED = 4  # the live attack's chargers and guesses: random, but the same on every run
HARDENED_ATTACK_BUDGET = 20  # failed attempts: what breaks a classic charger, and then some
OCPP_WAIT = 15.0  # seconds the story waits for the charger and the CSMS (they take milliseconds)


class DemoFailed(Exception):
    """The charger, phone or fleet did something the story says it must not do."""


@dataclass
class Step:
    """One step of the story: what we say, what we saw, how it ended, how long it took."""

    number: int
    title: str
    narration: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    shown: list[RenderableType] = field(default_factory=list)
    outcome: str = ""
    ms: float = 0.0

    def fact(self, label: str, value: object) -> None:
        """Record an observed fact, shown as `label: value` in the step's panel."""
        self.facts.append((label, str(value)))

    def show(self, renderable: RenderableType) -> None:
        """Show something in the step's panel after its facts (the sticker's QR code)."""
        self.shown.append(renderable)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def sticker_qr(payload: str) -> Text:
    """The sticker's QR code as terminal text: half blocks, two modules per character row.

    segno draws light modules as full blocks, so it is styled white on black to scan the same
    on light and dark terminals; without colours (NO_COLOR) it relies on a dark terminal.
    """
    out = io.StringIO()
    segno.make(payload, error="m").terminal(out=out, compact=True)
    return Text(out.getvalue().rstrip("\n"), style="white on black", no_wrap=True)


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


def _shown_pin(info: object, what: str) -> Pin:
    """The PIN Charger Info carries, or DemoFailed when it carries none."""
    pin = getattr(info, "pin", None)
    if not isinstance(pin, Pin):
        raise DemoFailed(f"{what} must show the PIN")
    return pin


def _watch_disconnection(link: ChargerLink) -> list[float]:
    """When the charger ends `link` (perf_counter seconds), once it has: read it later."""
    dropped: list[float] = []
    connection = link.connection
    connection.once(connection.EVENT_DISCONNECTION, lambda *_: dropped.append(time.perf_counter()))
    return dropped


async def _wait_for_disconnection(
    link: ChargerLink, timeout: float, since: float, dropped: list[float]
) -> float:
    """Seconds from `since` until the charger dropped `link` (waiting at most `timeout`)."""
    if not await link.wait_closed(timeout):
        raise DemoFailed(
            f"the charger did not interrupt the link within {timeout:.0f} s after the change"
        )
    return (dropped[0] if dropped else time.perf_counter()) - since


class Demo:
    """The story, step by step, on one testbed and fleet; each step prints a panel when it ends."""

    def __init__(
        self,
        console: Console,
        bed: Testbed,
        fleet: LocalFleet,
        clock: FakeClock,
        factory: Path,
        port: int = 0,
    ) -> None:
        self.console = console
        self.bed = bed
        self.fleet = fleet
        self.clock = clock
        self.factory_out = factory
        self.steps: list[Step] = []
        self.current: Step | None = None
        self.made: dict[str, Provisioned] = {}  # by model
        self.chargers: dict[str, ChargerDaemon] = {}  # by serial
        self.phones: dict[str, Phone] = {}
        self.accounts: dict[str, FleetClient] = {}  # by email
        self.servers = contextlib.ExitStack()  # the fleet's CSMS behind uvicorn, once started
        self.links: list[StationLink] = []  # the chargers' OCPP links
        self.port = port  # the fleet's server's: a free one when 0
        self.base = ""  # its address, once it serves

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
        shown = [part for renderable in step.shown for part in (Text(), renderable)]
        body = Group(Text(step.narration, style="italic"), Text(), facts, *shown, Text(), outcome)
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

    async def account(self, email: str) -> FleetClient:
        client = self.accounts[email] = await self.fleet.account(email)
        return client

    def serial(self, model_firmware: tuple[str, str]) -> str:
        return self.made[model_firmware[0]].serial

    async def install(self, made: Provisioned) -> tuple[Path, ChargerDaemon]:
        """`chargepin charger init --bundle FILE`: the bundle file as the factory wrote it."""
        path = write_bundle(made.bundle, self.factory_out)
        identity = factory_identity(
            path, serial=None, model=None, firmware=None, produced=None, secret=None
        )
        assert identity.secret is not None  # a bundle always carries the secret
        spec = ChargerSpec(
            serial=identity.serial,
            model=identity.model,
            firmware=identity.firmware,
            produced=identity.produced,
            secret=identity.secret,
            profile=PROFILE,
        )
        daemon = self.chargers[identity.serial] = await self.bed.charger(spec, name=identity.serial)
        return path, daemon

    async def reconnect(self, phone: str, email: str, serial: str) -> None:
        """A bonded phone connects through the app: no PIN asked, status read."""
        connected = await troubleshooting.connect(self.phones[phone], self.accounts[email], serial)
        _expect(not connected.paired_now, f"the {phone} phone must use its bond")
        await connected.link.status()
        await connected.link.disconnect()

    async def close_ocpp(self) -> None:
        """Stop the chargers' OCPP links, then the CSMS's server (its sockets are closed)."""
        for link in self.links:
            await link.stop()
        self.links.clear()
        self.servers.close()

    async def until(self, what: str, check: Callable[[], Awaitable[T]]) -> T:
        """The first truthy `await check()`: the charger and the CSMS work on their own."""
        deadline = time.perf_counter() + OCPP_WAIT
        while not (value := await check()):
            if time.perf_counter() > deadline:
                raise DemoFailed(f"{what}: not within {OCPP_WAIT:.0f} s")
            await asyncio.sleep(0.01)
        return value

    # ---------------------------------------------------------------- the story

    async def run(self) -> None:
        await self.factory()
        await self.commissioning()
        await self.first_pairing()
        await self.bonded_reconnect()
        await self.restart()
        await self.ocpp_link()
        await self.invited_user()
        await self.wrong_then_right()
        await self.lockout()
        await self.security_events()
        await self.optional_charger()
        await self.change_pin()
        await self.revocation()
        await self.attack()
        await self.web_app()

    async def factory(self) -> None:
        with self.step(
            "Factory: a Pulsar Max on firmware 6.11.2 and a Pulsar Plus on 6.8.0",
            "The factory creates both chargers in the fleet database with fresh secrets (kept "
            "in the fleet's vault) and one-time claim codes. Each charger is initialised from "
            "its provisioning bundle, like `chargepin charger init --bundle`; the sticker's QR "
            "code carries the serial and the claim code, never the PIN.",
        ) as step:
            step.fact("fleet service", f"in this process, SQLite {FLEET_DATABASE}")
            for model, firmware in (MANDATORY, OPTIONAL):
                [made] = self.fleet.provision(model, firmware, PRODUCED)
                self.made[model] = made
                path, daemon = await self.install(made)
                mode = made.policy.mode.name.lower()
                state = "on" if daemon.store.pin_enabled else "off until the owner enables it"
                step.fact(made.serial, f"{model}, firmware {firmware}: PIN {mode}, {state}")
                step.fact("  bundle", f"{path.name} -> charger {daemon.address} ({PROFILE})")
            sticker = self.made[MANDATORY[0]].sticker.encode()
            step.fact(f"sticker on {self.serial(MANDATORY)}", sticker)
            step.show(sticker_qr(sticker))
            step.outcome = "2 chargers provisioned and initialised from their bundles"

    async def commissioning(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "Commissioning: the owner scans the sticker",
            "The owner creates an account in the app and scans the QR code: the first valid "
            "claim makes them the owner, and the app shows the PIN right after the scan.",
        ) as step:
            owner = await self.account(OWNER)
            started = time.perf_counter()
            info = await owner.claim(self.made[MANDATORY[0]].sticker.encode())
            took = time.perf_counter() - started
            _expect(info.serial == serial, f"the sticker must claim {serial}")
            _expect(info.role == "owner", "the first claim must make the scanner the owner")
            _expect(info.pin_enabled, "the 6.11 charger must have its PIN on")
            pin = _shown_pin(info, "the claim")
            step.fact("account", OWNER)
            step.fact("claim", f"{info.serial} ({info.model}): role {info.role}, {_ms(took)}")
            step.fact("PIN class", f"{info.pin_class} (firmware 6.11 or higher)")
            step.fact("PIN shown after the scan", f"{pin} (epoch {info.epoch})")
            step.outcome = f"claimed; the app shows PIN {pin}"

    async def first_pairing(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "The owner's phone pairs with the PIN",
            "First connection from a new phone: LE Secure Connections passkey entry, the owner "
            "types the PIN the app showed after the scan.",
        ) as step:
            owner = self.accounts[OWNER]
            pin = _shown_pin(await owner.charger_info(serial), "Charger Info")
            phone = await self.phone("owner")
            started = time.perf_counter()
            connected = await troubleshooting.connect(phone, owner, serial, typed_pin=pin)
            paired = time.perf_counter() - started
            link = connected.link
            _expect(connected.paired_now, "a new phone must pair")
            _expect(connected.troubleshooting is None, "the PIN shown after the scan must work")
            status = await link.status()
            charging = await link.start_charging()
            await link.disconnect()
            step.fact("phone", phone.device.random_address)
            step.fact("paired with", f"{link.address} using PIN {pin} in {_ms(paired)}")
            step.fact("status", f"{status.state.name.lower()}, limit {status.current_limit} A")
            step.fact("after start", f"{charging.state.name.lower()}")
            step.outcome = f"paired with the PIN in {_ms(paired)}; charging started"

    async def bonded_reconnect(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "Bonded reconnect, no PIN",
            "The phone is bonded now: it reconnects with its keys and is never asked again.",
        ) as step:
            started = time.perf_counter()
            connected = await troubleshooting.connect(
                self.phones["owner"], self.accounts[OWNER], serial
            )
            took = time.perf_counter() - started
            _expect(not connected.paired_now, "a bonded phone must not pair again")
            status = await connected.link.status()
            await connected.link.disconnect()
            step.fact("paired_now", connected.paired_now)
            step.fact("secured with the bond in", _ms(took))
            step.fact("status", status.state.name.lower())
            step.outcome = f"reconnected without the PIN in {_ms(took)}"

    async def restart(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "Daemon restart: bonds are kept",
            "The charger reboots: the daemon stops and starts again on the same SQLite state.",
        ) as step:
            started = time.perf_counter()
            daemon = self.chargers[serial] = await self.bed.restart(
                self.chargers[serial], name=serial
            )
            rebooted = time.perf_counter() - started
            await self.reconnect("owner", OWNER, serial)
            step.fact("restart took", _ms(rebooted))
            step.fact("bonds on the charger", len(await daemon.store.keystore.get_all()))
            step.fact("owner reconnects", "with the bond, no PIN")
            step.outcome = "restarted; the owner reconnects without the PIN"

    async def ocpp_link(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "The charger connects to the fleet over OCPP 2.0.1",
            "The fleet service is also the charger's CSMS: a WebSocket on the same port as its "
            "API (here on 127.0.0.1; TLS beyond loopback). The daemon connects as a Charging "
            "Station with its serial as the identity and a password derived from its factory "
            "secret, which the fleet checks without storing it. From now on its security events "
            "reach the owner as they happen, and the owner's decisions reach it with no phone.",
        ) as step:
            base = self.base = self.servers.enter_context(serve(self.fleet.app, port=self.port))
            endpoint = csms_endpoint(base.replace("http://", "ws://") + "/ocpp/", serial)
            link = StationLink(self.chargers[serial], StationConfig(endpoint))
            started = time.perf_counter()
            link.start()
            self.links.append(link)
            try:
                await asyncio.wait_for(link.connected.wait(), OCPP_WAIT)
            except TimeoutError:
                raise DemoFailed(f"the charger did not reach the CSMS at {endpoint.url}") from None
            took = time.perf_counter() - started
            connection = await self.accounts[OWNER].connection(serial)
            _expect(connection["online"], "the owner must see the charger online")
            step.fact("CSMS", f"{endpoint.url} (security profile {endpoint.security_profile})")
            step.fact(
                "charger", f"Basic auth as {serial}, BootNotification accepted in {_ms(took)}"
            )
            step.fact(
                "owner sees", f"online, connector {str(connection['connector_status']).lower()}"
            )
            step.outcome = f"connected over OCPP in {_ms(took)}; the owner sees it online"

    async def invited_user(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "An invited user",
            "The owner invites a family member from the app; they accept the invitation with "
            "their own account, see the PIN on Charger Info and pair their phone with it.",
        ) as step:
            code = await self.accounts[OWNER].invite(serial, INVITED)
            step.fact("invitation", f"{OWNER} invites {INVITED}")
            invited = await self.account(INVITED)
            accepted = await invited.accept(code)
            _expect(accepted.get("role") == "user", "an accepted invitation must make a user")
            step.fact("accepted", f"{INVITED}: role {accepted['role']} on {serial}")
            info = await invited.charger_info(serial)
            pin = _shown_pin(info, "the invited user's Charger Info")
            step.fact("Charger Info shows", f"{pin} (epoch {info.epoch})")
            phone = await self.phone("invited")
            started = time.perf_counter()
            connected = await troubleshooting.connect(phone, invited, serial, typed_pin=pin)
            took = time.perf_counter() - started
            _expect(connected.paired_now, "the invited phone must pair")
            _expect(connected.troubleshooting is None, "the PIN on Charger Info must work")
            await connected.link.status()
            await connected.link.disconnect()
            step.fact("phone", f"{phone.device.random_address} paired in {_ms(took)}")
            step.outcome = f"invited user's phone paired in {_ms(took)}"

    async def wrong_then_right(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "A wrong PIN, then the right one",
            "The invited user sets up a tablet and types the PIN with two digits swapped. "
            "Hardened profile: the failure moves the charger to the next PIN epoch, so whatever "
            "bits the attempt leaked about the old PIN are worthless. The app's troubleshooting "
            "screen asks the fleet for the PIN of the epoch the charger now advertises.",
        ) as step:
            invited = self.accounts[INVITED]
            tablet = await self.phone("invited-tablet")
            before = await tablet.read_info(serial)
            right = _shown_pin(await invited.charger_info(serial), "Charger Info")
            typed = _typo(right)
            shown: list[str] = []
            started = time.perf_counter()
            connected = await troubleshooting.connect(
                tablet, invited, serial, typed_pin=typed, show=shown.append
            )
            took = time.perf_counter() - started
            link = connected.link
            if connected.troubleshooting is None:
                await link.disconnect()
                raise DemoFailed("a wrong PIN must not pair")
            _expect(connected.paired_now, "the retry must pair")
            after = link.info.epoch
            await link.disconnect()
            _expect(after == before.epoch + 1, "a wrong PIN must move to the next epoch")
            _expect(shown == [connected.troubleshooting], "the app must show the message once")
            step.fact("typed", f"{typed} (Charger Info showed {right}, epoch {before.epoch})")
            step.fact("charger", f"wrong PIN refused; epoch {before.epoch} -> {after}")
            step.fact("troubleshooting shows", connected.troubleshooting)
            step.fact("retry", f"paired; {_ms(took)} from the typo to the bond")
            step.outcome = f"wrong PIN refused, epoch {before.epoch} -> {after}; retry paired"

    async def lockout(self) -> None:
        serial = self.serial(MANDATORY)
        daemon = self.chargers[serial]
        secret = self.made[MANDATORY[0]].secret
        config = daemon.profile.lockout
        with self.step(
            "Brute force: 5 wrong PINs lock the charger",
            "Durations are compressed: the chargers and the fleet run on a fake clock that this "
            f"demo moves forward instead of waiting. Rule: {config.failures} failures within "
            f"{format_duration(config.window)} lock new pairings for "
            f"{format_duration(config.duration)}. The stranger has no account: no app, no PIN.",
        ) as step:
            # The tablet's failure is still in the sliding window: let it age out first.
            self.clock.advance(config.window + 1)
            step.fact("fake clock", f"+{format_duration(config.window + 1)} (window cleared)")
            stranger = await self.phone("stranger")
            rng = random.Random(STRANGER_SEED)
            epoch = (await stranger.read_info(serial)).epoch
            locked_for = 0.0
            for attempt in range(1, config.failures + 1):
                # Never the right PIN (known here from the factory bundle), so the run is the same.
                guess = _guess(rng, epoch_pin(secret, serial, epoch))
                started = time.perf_counter()
                try:
                    await stranger.connect(serial, pin=guess)
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
            guess = _guess(rng, epoch_pin(secret, serial, epoch))
            try:
                await stranger.connect(serial, pin=guess)
            except ChargerLocked as error:
                refused = error
            else:
                raise DemoFailed("a pairing during the lockout must be refused")
            _expect(refused.retry_after > 0, "a locked charger must say when to retry")
            step.fact("attempt 6", f"ChargerLocked: {refused}")
            connected = await troubleshooting.connect(
                self.phones["owner"], self.accounts[OWNER], serial
            )
            _expect(not connected.paired_now, "the owner's phone must use its bond")
            status = await connected.link.status()
            await connected.link.disconnect()
            step.fact(
                "owner's phone", f"bonded, reads status: {status.state.name.lower()} (no PIN)"
            )
            step.outcome = (
                f"stranger refused (retry in {format_duration(refused.retry_after)}); owner served"
            )

        with self.step(
            "The lock expires",
            "The fake clock moves past the retry-after time. The owner's new tablet pairs with "
            "the PIN of the epoch the charger advertises, then tells the fleet what the charger "
            "publishes (reconciliation), so Charger Info follows the charger's rotations.",
        ) as step:
            owner = self.accounts[OWNER]
            self.clock.advance(refused.retry_after + 1)
            step.fact("fake clock", f"+{format_duration(refused.retry_after + 1)}")
            tablet = await self.phone("owner-tablet")
            advertised = await tablet.read_info(serial)
            _expect(not advertised.locked, "the lock must be over")
            started = time.perf_counter()
            connected = await troubleshooting.connect(tablet, owner, serial)
            took = time.perf_counter() - started
            _expect(connected.paired_now, "pairing must work again after the lock")
            await connected.link.disconnect()
            info = await owner.charger_info(serial)
            pin = _shown_pin(info, "Charger Info")
            # The app reconciles on every connection: Charger Info follows the rotations.
            _expect(info.epoch == advertised.epoch, "Charger Info must follow the charger")
            step.fact("charger advertises", f"epoch {advertised.epoch}, not locked")
            step.fact("owner's tablet", f"paired with the fleet's PIN in {_ms(took)}")
            step.fact("Charger Info shows", f"{pin} (epoch {info.epoch}, reconciled)")
            step.outcome = "lock over; pairing works again"

    async def security_events(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "What the owner saw: the charger's security events",
            "Every pairing with the PIN, every wrong PIN and the lockout went to the fleet as an "
            "OCPP SecurityEventNotification as it happened (queued in the charger's state file "
            "first: an outage or a power cut loses none). The owner reads them in words, as the "
            "fleet's API gives them; the times are the fake clock's.",
        ) as step:
            owner, store = self.accounts[OWNER], self.chargers[serial].store

            async def all_sent() -> list[dict[str, Any]]:
                """The owner's view once the charger's queue is empty: each event answered."""
                return [] if store.queue_length() else await owner.security_events(serial)

            events = list(
                reversed(await self.until("the charger's events reaching the owner", all_sent))
            )
            _expect(
                any(e["type"] == "org.chargepin.PinLockout" for e in events),
                "the lockout must reach the owner",
            )
            for event in events:
                at = dt.datetime.fromisoformat(event["occurred_at"]).strftime("%H:%M:%S")
                step.fact(at, f"{event['type']}: {event['meaning']}")
            # A burst of identical failures may travel as one event with a count (the storm rule).
            wrong = sum(
                int(json.loads(e["tech_info"] or "{}").get("count", 1))
                for e in events
                if e["type"] == "MaintenanceLoginFailed"
            )
            step.outcome = (
                f"{_count(len(events), 'event')} in the owner's view: "
                f"{_count(wrong, 'wrong PIN')} and the lockout among them"
            )

    async def optional_charger(self) -> None:
        made = self.made[OPTIONAL[0]]
        serial = made.serial
        with self.step(
            "Optional class: the owner enables the PIN",
            "The owner commissions the Pulsar Plus on firmware 6.8.0: the PIN is optional and "
            "off, so phones pair with Just Works. The owner enables it with a ticket from the "
            "fleet; the charger's signed receipt commits the change in the fleet, the charger "
            "interrupts the link and the next connection needs the PIN.",
        ) as step:
            owner = self.accounts[OWNER]
            info = await owner.claim(made.sticker.encode())
            _expect(info.role == "owner", "the owner must claim the second charger")
            _expect(not info.pin_enabled and info.pin is None, "the 6.8 charger starts PIN off")
            step.fact(
                "sticker scanned", f"{serial}: role {info.role}; Charger Info: {info.message}"
            )
            phone = self.phones["owner"]
            connected = await troubleshooting.connect(phone, owner, serial)
            link = connected.link
            _expect(connected.paired_now and not link.info.pin_enabled, "Just Works, PIN off")
            step.fact("PIN class", f"{link.info.pin_mode.name.lower()}, PIN off")
            step.fact("owner's phone", "paired with Just Works (no PIN)")
            dropped = _watch_disconnection(link)
            started = time.perf_counter()
            result = await owner_actions.apply(link, owner, Action.ENABLE_PIN)
            _expect(result.ok and bool(result.receipt), f"enable_pin refused: {result.reason}")
            info = await owner.charger_info(serial)
            _expect(info.pin_enabled, "the receipt must commit the PIN in the fleet")
            pin = _shown_pin(info, "Charger Info after enabling")
            step.fact("ticket", "enable_pin: applied, receipt committed in the fleet")
            took = await _wait_for_disconnection(link, RESULT_READ_GRACE + 3.0, started, dropped)
            step.fact("link interrupted", f"by the charger, {_ms(took)} after Enable PIN")
            try:
                await phone.connect(serial)
            except PinNeeded as error:
                step.fact("reconnect, no PIN", f"PinNeeded: {error}")
            else:
                raise DemoFailed("after enabling, a connection without the PIN must fail")
            connected = await troubleshooting.connect(phone, owner, serial, typed_pin=pin)
            took = time.perf_counter() - started
            _expect(connected.paired_now, "the owner must pair with the new PIN")
            _expect(connected.troubleshooting is None, "the PIN on Charger Info must work")
            await connected.link.status()
            await connected.link.disconnect()
            step.fact("Charger Info shows", f"{pin} (epoch {info.epoch})")
            step.fact("reconnect with PIN", f"paired; {_ms(took)} from ticket to PIN bond")
            step.outcome = "PIN enabled by ticket; link interrupted; the next connection needs it"

    async def change_pin(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "Changing the PIN (firmware 6.11)",
            "The owner picks a new PIN in the app; the fleet seals it into a ticket, so it never "
            "crosses the air in clear. The charger's signed receipt tells the fleet the new PIN "
            "is live, and Charger Info shows it to the owner and the invited user.",
        ) as step:
            owner = self.accounts[OWNER]
            new_pin = generate_pin()
            connected = await troubleshooting.connect(self.phones["owner"], owner, serial)
            _expect(not connected.paired_now, "the owner's phone must use its bond")
            result = await owner_actions.apply(
                connected.link, owner, Action.CHANGE_PIN, {"pin": new_pin.digits}
            )
            await connected.link.disconnect()
            _expect(result.ok and bool(result.receipt), f"change_pin refused: {result.reason}")
            step.fact("new PIN", new_pin)
            step.fact("receipt", f"{result.action}: committed in the fleet")
            for email in (OWNER, INVITED):
                info = await self.accounts[email].charger_info(serial)
                _expect(info.pin == new_pin, f"Charger Info must show {email} the new PIN")
                step.fact(f"Charger Info ({info.role})", f"{info.pin} (epoch {info.epoch})")
            await self.reconnect("owner", OWNER, serial)
            await self.reconnect("invited", INVITED, serial)
            step.fact("bonded phones", "owner and invited reconnect without the PIN")
            newcomer = await self.phone("new-phone")
            try:
                await newcomer.connect(serial)
            except PinNeeded:
                step.fact("a new phone, no PIN", "PinNeeded")
            else:
                raise DemoFailed("a new phone must need the PIN")
            started = time.perf_counter()
            connected = await troubleshooting.connect(
                newcomer, self.accounts[INVITED], serial, typed_pin=new_pin
            )
            took = time.perf_counter() - started
            _expect(connected.paired_now, "the new phone must pair with the new PIN")
            _expect(connected.troubleshooting is None, "the new PIN must work")
            await connected.link.disconnect()
            step.fact("a new phone, new PIN", f"paired in {_ms(took)}")
            step.outcome = "PIN changed; Charger Info shows it; bonds kept; new phones need it"

    async def revocation(self) -> None:
        serial = self.serial(MANDATORY)
        daemon = self.chargers[serial]
        with self.step(
            "The owner revokes the family member: the charger hears it over OCPP",
            "The owner removes the invited user in the app and asks for a re-key, since they saw "
            "the PIN. No phone of the owner is near the charger: the fleet sends each removal "
            "and the re-key over the OCPP link as the same sealed tickets a phone would carry, "
            "and commits the charger's signed receipts. The member's bonded phone is refused.",
        ) as step:
            owner = self.accounts[OWNER]
            member = next(m for m in await owner.members(serial) if m["email"] == INVITED)
            seen = max((e["id"] for e in await owner.security_events(serial)), default=0)
            bonds = len(daemon.store.keystore.list_bonds())
            generation = daemon.store.generation
            started = time.perf_counter()
            revoked = await owner.revoke(serial, int(member["user_id"]), rekey=True)
            step.fact("revoked", f"{INVITED}: {len(revoked['phones_to_remove'])} phones, re-key")

            async def all_applied() -> list[dict[str, Any]]:
                commands = await owner.commands(serial)
                if any(c["state"] == "failed" for c in commands):
                    raise DemoFailed(f"the charger refused a command: {commands}")
                return commands if all(c["state"] == "applied" for c in commands) else []

            commands = await self.until("the commands reaching the charger", all_applied)
            took = time.perf_counter() - started
            for command in reversed(commands):
                args = " ".join(command["args"].values())
                step.fact(
                    f"command {command['id']}",
                    f"{command['action']} {args}".rstrip()
                    + f": {command['state']}, signed receipt committed",
                )
            left = len(daemon.store.keystore.list_bonds())
            _expect(daemon.store.generation == generation + 1, "the re-key must reach the charger")
            step.fact(
                "charger",
                f"{bonds} -> {left} paired phones, PIN generation {generation} -> "
                f"{daemon.store.generation}, {_ms(took)} after the revocation",
            )
            try:
                await self.phones["invited"].connect(serial)
            except PinNeeded as error:
                step.fact("member's bonded phone", f"refused, PinNeeded: {error}")
            else:
                raise DemoFailed("the revoked member's phone must be refused")
            try:
                await self.accounts[INVITED].charger_info(serial)
            except FleetRefused as error:
                step.fact("member's Charger Info", f"{error.status}: {error}")
            else:
                raise DemoFailed("the revoked member must not see Charger Info")
            info = await owner.charger_info(serial)
            _expect(info.pin == daemon.store.current_pin(), "Charger Info must follow the re-key")
            step.fact("owner's Charger Info", f"{_shown_pin(info, 'Charger Info')} (new sequence)")

            async def reported() -> list[dict[str, Any]]:
                """The charger's own reports of the removals and the re-key, once all are in."""
                news = [e for e in await owner.security_events(serial) if e["id"] > seen]
                kinds = [e["type"] for e in news]
                done = "ReconfigurationOfSecurityParameters" in kinds and kinds.count(
                    "org.chargepin.PhoneRemoved"
                ) == len(revoked["phones_to_remove"])
                return news if done else []

            for event in reversed(
                await self.until("the charger's reports of it reaching the owner", reported)
            ):
                step.fact("owner's security events", event["meaning"])
            step.outcome = (
                f"revoked and re-keyed over OCPP in {_ms(took)}: "
                f"{_count(bonds - left, 'phone')} forgotten, the member's phone refused"
            )

    async def attack(self) -> None:
        with self.step(
            "The attack, live: recovering a PIN bit by bit",
            "An attacker's radio pairs with guessed PINs. Passkey entry checks one PIN bit per "
            "round and the charger fails at the first wrong one, so every failure tells the "
            "attacker some bits. Against a classic charger (fixed PIN, 5 failures lock for 5 "
            "minutes) it keeps those bits; against a hardened one each failure moves the charger "
            "to a new PIN (the next epoch) and the bits are worthless. Two fresh chargers, the "
            "lockouts waited out on their fake clocks (docs/SECURITY.md).",
        ) as step:
            results = {}
            for profile in ProfileName:
                rng = random.Random(ATTACK_SEED)
                started = time.perf_counter()
                async with arena(profile, rng, serial=f"CP-{profile.upper()}") as place:
                    trial = await attack_trial(place, BitStrategy(rng), HARDENED_ATTACK_BUDGET)
                    found = trial.recovered and trial.attempts[-1].passkey == place.pin.passkey
                took = time.perf_counter() - started
                attacker_time = format_duration(trial.simulated_seconds)
                results[profile] = found
                step.fact(
                    profile,
                    (
                        f"PIN {trial.attempts[-1].passkey:06d} recovered after "
                        f"{trial.failed_attempts} failed attempts and "
                        f"{_count(trial.lockouts, 'lockout')}: {attacker_time} of attacker time"
                        if found
                        else f"PIN not recovered: {trial.failed_attempts} failed attempts met "
                        f"{trial.epochs_seen} different PINs, {_count(trial.lockouts, 'lockout')}, "
                        f"{attacker_time} of attacker time"
                    )
                    + f" ({took:.1f} s here)",
                )
            _expect(
                results[ProfileName.CLASSIC],
                "the classic charger's PIN must fall to the bit attack",
            )
            _expect(not results[ProfileName.HARDENED], "the hardened charger's PIN must hold")
            step.outcome = (
                "classic: PIN recovered in minutes of attacker time; hardened: not recovered "
                "(expected: decades, docs/SECURITY.md)"
            )

    async def web_app(self) -> None:
        serial = self.serial(MANDATORY)
        with self.step(
            "The app in a browser: the same fleet's web pages",
            "The fleet also serves the app's pages (docs/APP.md) on the port the charger's OCPP "
            "link uses. The owner invites a friend, who accepts; both sign in on the pages as a "
            "browser does (the sign-in form, its CSRF token, a session cookie) and see the "
            "chargers of this story.",
        ) as step:
            code = await self.accounts[OWNER].invite(serial, FRIEND)
            friend = await self.account(FRIEND)
            accepted = await friend.accept(code)
            _expect(accepted.get("role") == "user", "an accepted invitation must make a user")
            step.fact("invitation", f"{OWNER} invites {FRIEND}: role {accepted['role']}")
            for email, sees in ((OWNER, list(self.chargers)), (FRIEND, [serial])):
                listed = await _signed_in_page(self.base, email, PASSWORD, "/app/chargers")
                shown = [s for s in self.chargers if s in listed]
                _expect(shown == sees, f"My chargers of {email} must list {sees}, not {shown}")
                step.fact(f"signed in as {email}", f"My chargers lists {', '.join(shown)}")
            step.fact("app", f"{self.base}/app/")
            step.outcome = "the pages serve the story's fleet: 2 accounts signed in"

    def app_panel(self, serving: bool) -> Panel:
        """Where to open the app with the story's data, and as whom."""
        accounts = Table.grid(padding=(0, 2))
        accounts.add_column(style="cyan", no_wrap=True)
        accounts.add_column()
        accounts.add_column()
        accounts.add_row("owner", OWNER, f"password: {PASSWORD}")
        accounts.add_row("invited user", FRIEND, f"password: {PASSWORD}")
        accounts.add_row("revoked member", INVITED, f"password: {PASSWORD}")
        if serving:
            where = Text.assemble(
                "Open ",
                (f"{self.base}/app/", "bold"),
                " in a browser: the fleet of this story ("
                f"{', '.join(self.chargers)}) until Ctrl-C. Loopback only; the clock stays where "
                "the story left it.",
            )
        else:
            where = Text.assemble(
                "The app with this story's data: ",
                ("make demo SERVE=1", "bold"),
                " (or chargepin demo --serve) tells it again and keeps it at ",
                (f"http://127.0.0.1:{APP_PORT}/app/", "bold"),
                " until Ctrl-C.",
            )
        return Panel(
            Group(where, Text(), accounts),
            title="[bold]The app[/bold]",
            title_align="left",
            border_style="green",
        )


async def _signed_in_page(base: str, email: str, password: str, path: str) -> str:
    """`path` after signing in on the pages as a browser does: the sign-in form's CSRF token
    and pre-session cookie, our Origin, the session cookie the answer sets."""
    async with httpx.AsyncClient(base_url=base, headers={"Origin": base}) as browser:
        form = await browser.get("/app/signin")
        token = re.search(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"', form.text)
        if token is None:
            raise DemoFailed(f"the sign-in page has no form: {form.status_code}")
        fields = {CSRF_FIELD: token.group(1), "email": email, "password": password}
        signed = await browser.post("/app/signin", data=fields, follow_redirects=True)
        page = await browser.get(path)
        if signed.status_code != 200 or page.status_code != 200:
            raise DemoFailed(f"{email} could not sign in on the pages: {signed.status_code}")
        return page.text


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


async def _run(console: Console, serving: bool, port: int) -> None:
    if serving:
        _check_port(port)
    background = _BackgroundErrors()
    asyncio.get_running_loop().set_exception_handler(background)
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="chargepin-demo-") as directory:
        root = Path(directory)
        factory = root / "factory"
        factory.mkdir()
        started = time.perf_counter()
        fleet = LocalFleet.start(f"sqlite:///{root / FLEET_DATABASE}", clock)
        bed = Testbed(root, clock)
        demo = Demo(console, bed, fleet, clock, factory, port if serving else 0)

        async def close() -> None:
            await demo.close_ocpp()
            await bed.close()
            await fleet.close()

        try:
            await demo.run()
            if serving:  # the ending now, then the app until Ctrl-C, with the chargers online
                _check_background(background)
                _ending(console, demo, time.perf_counter() - started, serving)
                await _until_interrupted()
                console.print("[bold]stopped[/bold]: the demo's fleet and its data are gone.")
        except BaseException as error:
            with contextlib.suppress(Exception):  # the story's error is the one to report
                await close()
            step = demo.current
            if step is None or not isinstance(error, Exception):
                raise  # Ctrl-C or a cancellation: not a failure of the story
            raise DemoFailed(f"step {step.number} ({step.title}): {_describe(error)}") from None
        await close()
        total = time.perf_counter() - started
    _check_background(background)
    if not serving:
        _ending(console, demo, total, serving)


def _check_port(port: int) -> None:
    """Refuse at once a port the app could not be served on (before a story that needs it)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            raise DemoFailed(
                f"cannot serve the app on {LOOPBACK}:{port} ({error.strerror}): stop what uses "
                f"it, or choose another port: make demo SERVE=1 PORT={port + 1}"
            ) from None


def _check_background(background: _BackgroundErrors) -> None:
    if background.messages:
        raise DemoFailed(f"the Bluetooth stack failed in the background: {background.messages[0]}")


def _ending(console: Console, demo: Demo, total: float, serving: bool) -> None:
    """The summary, then where to open the app with the story's data."""
    console.print(demo.summary(total))
    console.print(
        f"[bold green]Done:[/bold green] {len(demo.steps)} steps in {total:.1f} s on the "
        "virtual radio and the in-process fleet service (lockout durations compressed with a "
        "fake clock)."
    )
    console.print(demo.app_panel(serving))


async def _until_interrupted() -> None:
    """Wait for Ctrl-C: asyncio.run cancels the story's task on SIGINT, which ends the wait
    normally here (the task is uncancelled, so the closing that follows runs as usual)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()


def _describe(error: BaseException) -> str:
    if isinstance(error, PhoneError | DemoFailed):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def run(serve: bool = False, port: int = APP_PORT) -> int:
    """Tell the story with Rich output; 0 when every step behaved as promised, else 1. With
    `serve`, the app stays at http://127.0.0.1:`port`/app/ with the story's data until Ctrl-C
    (0: a free port)."""
    console = Console(highlight=False)
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    console.rule("[bold]chargepin demo[/bold]")
    console.print(
        "The real charger daemon and phone client on the real Bluetooth LE stack (Bumble), "
        "over a virtual radio, and the real fleet service (FastAPI, reached over HTTP in this "
        "process; the charger reaches its OCPP CSMS over a WebSocket on 127.0.0.1), with SQLite "
        "state in a temporary directory. Chargers and fleet share a fake clock, so lockout "
        "durations are compressed."
    )
    try:
        asyncio.run(_run(console, serve, port))
    except KeyboardInterrupt:
        console.print("[bold red]demo interrupted[/bold red]")
        return 130
    except Exception as error:
        console.print(
            f"[bold red]demo failed:[/bold red] {escape(_describe(error))}", soft_wrap=True
        )
        return 1
    return 0
