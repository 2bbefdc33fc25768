"""`chargepin lab attack revoked-user`: a member harvests what they can, is revoked, tries back.

Issue 9: an invited user used to take 1,000 future PINs from the API, and after being revoked
one deliberate wrong pairing moved a hardened charger into the harvested range. Here a real
fleet service (the ASGI app on a SQLite file, spoken to by the app's own client) and a real
charger daemon on the virtual radio, one clock for both:

1. The member pairs their phone, then harvests everything the API gives a member: Charger Info
   (with the PIN), the PIN of the epoch the charger attested, the PINs of the next 1,000 epochs
   (each asked for), their own charger-attested state relays, an admit_pairing ticket for a
   challenge they read. A second member stays and must keep working.
2. The owner revokes them: at the fleet, then near the charger their phones are removed and,
   in the `rekeyed` run, the charger re-keyed (`phone/owner_actions.revoke_at_charger`). The
   `not re-keyed` run does the same without the re-key: what a revocation alone is worth.
3. The revoked member tries every way back: the fleet (Charger Info, PINs, relaying the open
   info, a ticket), the old bond, every harvested PIN from a new phone, a deliberate wrong PIN
   (the hardened charger rotates) then the harvested PINs again, and the harvested admission
   ticket while a stranger keeps the charger locked.
4. The remaining member's Charger Info must show the charger's PIN and their new phone must
   pair with it.

Expected (docs/SECURITY.md): re-keyed, no way back in either profile; without the re-key, a
harvested PIN still pairs (the reason the app offers the re-key with every revocation).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chargepin.charger.daemon import ChargerDaemon
from chargepin.clock import FakeClock
from chargepin.core import lockout
from chargepin.core.pin import Pin
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.core.tickets import Action
from chargepin.lab.attacks.common import quiet_bumble
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.client import Phone
from chargepin.phone.errors import ChargerLocked, PhoneError, WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused

NAME = "revoked-user"
LOOK_AHEAD = 1000
"""Epochs ahead the member asks PINs for (the API allowed 1,000 before issue 9)."""
MODEL, FIRMWARE = "Pulsar Max", "6.11.2"
WRONG = Pin("918273")


@dataclass
class Way:
    """One way back in a revoked member tried, and what they got."""

    name: str
    got_in: bool
    answer: str


@dataclass
class Run:
    """One revocation (with or without the re-key) and everything tried after it."""

    rekeyed: bool
    harvested_pins: int = 0
    pins_ahead_given: int = 0
    ahead_answer: str = ""
    ways: list[Way] = field(default_factory=list)
    remaining_member_ok: bool = False
    generation_after: int = 0
    locked_for_replay: bool = False
    """The charger was locked when the harvested admission ticket was replayed."""

    @property
    def ways_in(self) -> int:
        return sum(way.got_in for way in self.ways)


async def _refused(call: Any) -> tuple[bool, str]:
    """(True, what it gave) when a fleet call answered, else (False, its status and code)."""
    try:
        value = await call
    except FleetRefused as refused:
        return False, f"{refused.status} {refused.code}"
    return True, f"200 {type(value).__name__}"


class RevokedUserLab:
    """A fleet, one charger, its owner, the member who will be revoked and one who stays."""

    def __init__(self, profile: ProfileName, rng: random.Random, directory: Path) -> None:
        self.profile = profile
        self.rng = rng
        self.clock = FakeClock()
        self.bed = Testbed(directory, self.clock)
        self.fleet = LocalFleet.start(f"sqlite:///{directory / 'fleet.db'}", self.clock)
        self.serial = ""

    async def close(self) -> None:
        await self.fleet.close()
        await self.bed.close()

    async def _phone(self, name: str) -> Phone:
        return await self.bed.phone(f"{name}-{len(self.bed.phones)}")

    async def _member(self, owner: FleetClient, email: str) -> FleetClient:
        code = await owner.invite(self.serial, email)
        member = await self.fleet.account(email)
        await member.accept(code)
        return member

    async def run(self, rekey: bool) -> Run:
        [made] = self.fleet.provision(MODEL, FIRMWARE)
        self.serial = made.serial
        daemon = await self.bed.install(made.bundle, self.profile)
        owner = await self.fleet.account(f"owner-{rekey}@example.com")
        await owner.claim(made.sticker.encode())
        owner_phone = await self._phone("owner")
        await (await troubleshooting.connect(owner_phone, owner, self.serial)).link.disconnect()
        member = await self._member(owner, f"member-{rekey}@example.com")
        stays = await self._member(owner, f"stays-{rekey}@example.com")
        run = Run(rekeyed=rekey)

        # 1. Harvest.
        member_phone = await self._phone("member")
        before = {name for name, _keys in await daemon.store.keystore.get_all()}
        connected = await troubleshooting.connect(member_phone, member, self.serial)
        # The phone the owner will pick from the charger's list (`phone devices`).
        member_bonds = [
            name for name, _keys in await daemon.store.keystore.get_all() if name not in before
        ]
        link = connected.link
        harvested: set[Pin] = set()
        info = await member.charger_info(self.serial)
        if info.pin is not None:
            harvested.add(info.pin)
        epoch = (await link.read_info()).epoch
        harvested.add(await member.pin_of_epoch(self.serial, epoch))
        for ahead in range(epoch + 1, epoch + 1 + LOOK_AHEAD):
            try:
                harvested.add(await member.pin_of_epoch(self.serial, ahead))
                run.pins_ahead_given += 1
            except FleetRefused as refused:
                run.ahead_answer = f"{refused.status} {refused.code}"
        relayed = await link.read_info()
        challenge = await link.read_challenge()
        admit_ticket = await member.ticket(self.serial, challenge, Action.ADMIT_PAIRING.value)
        await link.disconnect()
        run.harvested_pins = len(harvested)

        # 2. Revoke (and re-key) from the owner's bonded phone.
        members = await owner.members(self.serial)
        member_id = next(m["user_id"] for m in members if m["email"].startswith("member-"))
        answer = await owner.revoke(self.serial, member_id)
        answer = {
            **answer,
            "phones_to_remove": sorted({*answer["phones_to_remove"], *member_bonds}),
        }
        owner_link = (await troubleshooting.connect(owner_phone, owner, self.serial)).link
        try:
            await owner_actions.revoke_at_charger(owner_link, owner, answer, rekey)
        finally:
            await owner_link.disconnect()
        run.generation_after = daemon.store.generation

        # 3. Every way back in.
        ways = run.ways
        for name, call in (
            ("fleet: Charger Info", member.charger_info(self.serial)),
            ("fleet: PIN of the epoch", member.pin_of_epoch(self.serial, epoch)),
            ("fleet: relay the open info", member.reconcile(relayed)),
            ("fleet: a new ticket", member.ticket(self.serial, challenge, "admit_pairing")),
        ):
            answered, said = await _refused(call)
            ways.append(Way(name, answered, said))
        ways.append(await self._try(member_phone, None, "old bond"))
        for pin in sorted(harvested, key=str):
            ways.append(await self._try(await self._phone("new"), pin, "harvested PIN"))
        wrong = self._wrong(daemon)
        ways.append(await self._try(await self._phone("new"), wrong, "a wrong PIN on purpose"))
        for pin in sorted(harvested, key=str):
            ways.append(await self._try(await self._phone("new"), pin, "harvested PIN after it"))
        stranger = await self._phone("stranger")
        for _ in range(PROFILES[self.profile].lockout.failures):
            with contextlib.suppress(WrongPin, ChargerLocked):
                await stranger.connect(self.serial, pin=self._wrong(daemon))
        run.locked_for_replay = lockout.is_locked(
            daemon.store.lockout_config, daemon.store.lockout_state, self.clock.now()
        )
        ways.append(await self._admitted(admit_ticket, harvested))

        # 4. The member who stays.
        fresh = await troubleshooting.connect(await self._phone("stays"), stays, self.serial)
        await fresh.link.disconnect()
        shown = (await stays.charger_info(self.serial)).pin
        run.remaining_member_ok = fresh.paired_now and shown == daemon.store.current_pin()
        return run

    @staticmethod
    def _wrong(daemon: ChargerDaemon) -> Pin:
        """A PIN that is not the charger's now (the lab's referee reads the charger's)."""
        return WRONG if daemon.store.current_pin() != WRONG else Pin("918274")

    async def _try(self, phone: Phone, pin: Pin | None, name: str) -> Way:
        """Connect and, unless bonded, pair with `pin`; a protected read says whether it got in."""
        try:
            link = await phone.connect(self.serial, pin=pin)
        except PhoneError as error:
            return Way(name, False, type(error).__name__)
        try:
            await link.status()
            return Way(name, True, "served")
        except PhoneError as error:
            return Way(name, False, type(error).__name__)
        finally:
            await link.disconnect()

    async def _admitted(self, ticket: bytes, harvested: set[Pin]) -> Way:
        """The harvested admission ticket, while a stranger keeps the charger locked."""
        name = "harvested admission ticket while locked"
        pin = next(iter(sorted(harvested, key=str)))

        async def replay(_challenge: bytes) -> bytes:
            return ticket

        try:
            link = await (await self._phone("new")).connect(self.serial, pin=pin, admit=replay)
        except PhoneError as error:
            return Way(name, False, type(error).__name__)
        await link.disconnect()
        return Way(name, True, "paired while locked")


async def run(profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    quiet_bumble()
    rng = random.Random(seed)
    runs: list[Run] = []
    for _trial in range(trials):
        for rekey in (True, False):
            with tempfile.TemporaryDirectory(prefix="chargepin-lab-") as directory:
                lab = RevokedUserLab(profile, rng, Path(directory))
                try:
                    runs.append(await lab.run(rekey))
                finally:
                    await lab.close()
    rekeyed = [r for r in runs if r.rekeyed]
    kept = [r for r in runs if not r.rekeyed]
    held = all(r.ways_in == 0 and r.remaining_member_ok and r.locked_for_replay for r in rekeyed)
    ahead = sum(r.pins_ahead_given for r in runs)
    kept_in = sum(r.ways_in for r in kept)
    as_expected = held and ahead == 0 and all(r.remaining_member_ok for r in kept)
    verdict = (
        f"re-keyed: 0 ways back in of {sum(len(r.ways) for r in rekeyed)} tried; "
        f"without the re-key {kept_in} got in (a harvested PIN): offer the re-key"
        if as_expected
        else "a revoked member got back in after the re-key, or the API gave PINs ahead"
    )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "look_ahead_asked": LOOK_AHEAD,
        "runs": [asdict(r) | {"ways_in": r.ways_in} for r in runs],
        "as_expected": as_expected,
        "verdict": verdict,
    }


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the printed table: one per way back in, re-keyed and not."""
    runs = report["runs"]
    rows: list[tuple[str, str]] = [
        (
            f"PINs of epochs ahead given (of {report['look_ahead_asked']} asked, per run)",
            " / ".join(f"{r['pins_ahead_given']}" for r in runs),
        ),
        ("PINs harvested (distinct, per run)", " / ".join(str(r["harvested_pins"]) for r in runs)),
    ]
    for rekeyed in (True, False):
        chosen = [r for r in runs if r["rekeyed"] is rekeyed]
        label = "re-keyed" if rekeyed else "not re-keyed"
        tally: dict[str, list[int]] = {}
        for r in chosen:
            for way in r["ways"]:
                tally.setdefault(way["name"], []).append(int(way["got_in"]))
        for name, got in tally.items():
            rows.append((f"{label}: {name}", f"got in {sum(got)} / {len(got)}"))
        rows.append(
            (
                f"{label}: remaining member served",
                f"{sum(r['remaining_member_ok'] for r in chosen)} / {len(chosen)}",
            )
        )
    return rows
