"""`chargepin lab attack replay`: captured member tickets replayed, altered and moved.

A ticket is the only thing that changes a charger's security state over Bluetooth, and an
`admit_pairing` ticket is the only thing that lets a phone pair while new pairings are locked
out (DESIGN.md, "Tickets"; DECISIONS.md). Someone who got hold of tickets a member used (malware
on the phone, a leaked fleet response, a former co-owner's logs) must gain nothing from them.

Unlocked charger: the owner's phone uses four genuine tickets (`list_phones`, `change_pin` to a
custom PIN, `change_pin` to the next epoch, `remove_phone` of a spare phone, which then pairs
again so that a replayed removal would have something to remove). Locked charger (the lab fails
5 times first): a member's new phone is admitted with an `admit_pairing` ticket and pairs. The
attacker pre-plays each ticket on its own link before the member uses it, then writes every
captured ticket again:

- the same bytes on the same charger: by the owner's phone, by a revoked user's phone (bonded
  with the PIN, still in range, no authority any more) and by an unpaired central, each after
  reading a fresh challenge of its own;
- with one byte flipped (random positions and masks), truncated, or extended;
- on a second charger provisioned in the same testbed (another serial and factory secret);
- after it expired.

After every admission replay the unpaired central pairs with the right PIN: it must still be
refused as locked (0x09), or the replay let it past the lockout. Every write must be refused
with the daemon's answer (ATT 0x80 and a reason; 0x0F/0x05/0x82 before any ticket is read),
leave the PIN, epoch and bonds of both chargers as they were, and the chargers must keep
serving genuine tickets and phones (docs/SECURITY.md, "Replay").
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from bumble import att
from bumble.core import UUID
from bumble.device import Connection, Peer

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core import protocol
from chargepin.core.events import EventKind
from chargepin.core.pin import generate_pin
from chargepin.core.profiles import ProfileName
from chargepin.core.protocol import AdminResult
from chargepin.core.tickets import DEFAULT_LIFETIME, Action
from chargepin.lab.attacks.common import LOCKED, PASSKEY_SPACE, Arena, arena
from chargepin.lab.central import BareCentral
from chargepin.lab.raw_gatt import GattTable, RawGattClient
from chargepin.lab.security_state import SecurityState
from chargepin.lab.testbed import ChargerSpec, OwnerAuthority
from chargepin.phone.client import ChargerLink, Phone

NAME = "replay"
FLIPS = 8
TRUNCATIONS = 3
EXTENSIONS = 3
SECOND_SERIAL = "CP-LAB-0002"
TICKET_CODES = (int(protocol.AttAppError.TICKET_REJECTED), int(protocol.AttAppError.NOT_ALLOWED))
"""The ATT errors of a ticket the charger opened and refused (it counts those)."""
ATT_DETAILS = {
    int(att.ErrorCode.INSUFFICIENT_ENCRYPTION): "not encrypted: pair with the PIN first",
    int(att.ErrorCode.INSUFFICIENT_AUTHENTICATION): "not bonded with the PIN: pair with it",
    int(protocol.AttAppError.TICKET_REJECTED): "ticket rejected (the reason is in the admin "
    "result, readable once the link is encrypted)",
    int(protocol.AttAppError.LOCKED): "locked: nothing protected is served now",
}
"""What a phone makes of the ATT errors when it cannot read the admin result."""


class AdminPort:
    """The challenge, admin and admin-result characteristics of one link, used raw.

    The phone client turns refusals into exceptions; here the ATT error code is part of what
    is measured, so writes and reads keep it.
    """

    def __init__(self, gatt: RawGattClient) -> None:
        self._gatt = gatt

    @classmethod
    async def open(cls, connection: Connection) -> AdminPort:
        peer = Peer(connection)
        await peer.request_mtu(protocol.PREFERRED_MTU)
        services = await peer.discover_services([UUID(protocol.SERVICE_UUID)])
        if not services:
            raise protocol.ProtocolError("no chargepin service on this link")
        found = await services[0].discover_characteristics()
        return cls(RawGattClient(connection, peer, GattTable(tuple(found))))

    async def read_challenge(self) -> bytes:
        gatt = self._gatt
        return bytes(await gatt.peer.read_value(gatt.value(protocol.CHALLENGE_UUID)))

    async def write(self, blob: bytes) -> int | None:
        """Write a ticket; the ATT error code, None when the charger took it."""
        return await self._gatt.write(self._gatt.value(protocol.ADMIN_UUID), blob)

    async def result(self) -> AdminResult | int:
        """This link's admin result, or the ATT error code its read got."""
        raw = await self._gatt.read(self._gatt.value(protocol.ADMIN_RESULT_UUID))
        return raw if isinstance(raw, int) else AdminResult.decode(raw)


@dataclass(frozen=True)
class Capture:
    """A genuine ticket a member used, and whether the charger was locked then."""

    action: str
    args: dict[str, str]
    blob: bytes
    locked: bool


@dataclass
class Replay:
    """One write of a captured (maybe altered) ticket, and how the chargers took it."""

    ticket: str  # the captured ticket's action
    variant: str  # "same", "flip@17^0x40", "cut@30", "extend+5", "other charger", "expired"
    writer: str  # "owner", "revoked", "unpaired"
    charger: str  # "same" or "other"
    att_error: int | None  # the write's answer
    reason: str  # what the writer can read: the admin result's reason, else the ATT error
    detail: str  # what the charger told the writer
    charger_reason: str  # the reason in the charger's log (the lab's referee), if it logged one
    accepted: bool  # the write was taken, or (admission) the central then paired while locked
    changed: bool  # the security state of either charger changed
    counted: bool  # the charger's ticket_rejected counter moved
    paired_after: int | None = None  # admission replays: the SMP answer to pairing right after

    @property
    def refused_cleanly(self) -> bool:
        return not self.accepted and not self.changed and bool(self.reason and self.detail)

    @property
    def kind(self) -> str:
        """The replay's kind for the tables: variant without its position, writer, charger."""
        variant = self.variant.split("@")[0].split("+")[0]
        where = ", other charger" if self.charger == "other" else ""
        return f"{self.ticket}: {variant} ({self.writer}{where})"


def flipped(blob: bytes, at: int, mask: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1 :]


def variants(blob: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """Single-byte flips (always the version byte, a header byte and the tag's last byte among
    them), truncations and extensions of `blob`."""
    header = 2 + blob[1] if len(blob) > 1 else 1
    positions = {0, rng.randrange(1, header), len(blob) - 1}
    while len(positions) < FLIPS:
        positions.add(rng.randrange(len(blob)))
    out = []
    for at in sorted(positions):
        mask = rng.randrange(1, 256)
        out.append((f"flip@{at}^0x{mask:02x}", flipped(blob, at, mask)))
    for cut in sorted(rng.sample(range(1, len(blob)), TRUNCATIONS)):
        out.append((f"cut@{cut}", blob[:cut]))
    for _ in range(EXTENSIONS):
        extra = rng.randbytes(rng.randrange(1, 17))
        out.append((f"extend+{len(extra)}", blob + extra))
    return out


class ReplayLab:
    """Two chargers, the owner, a revoked user's phone, a spare phone and an unpaired central."""

    spare: Phone  # set up by setup(): the phone the owner's captured remove_phone removes
    stranger: BareCentral  # the unpaired central

    def __init__(self, place: Arena, other: ChargerDaemon, rng: random.Random) -> None:
        self.place = place
        self.other = other
        self.rng = rng
        self.authority: OwnerAuthority = place.bed.authority(place.daemon)
        self.ports: dict[tuple[str, str], AdminPort] = {}
        self.links: dict[str, ChargerLink] = {}
        self.spare_address = ""
        self.replays: list[Replay] = []
        self.captures: list[Capture] = []
        self.problems: list[str] = []
        self.serving: dict[str, bool] = {}

    @property
    def daemon(self) -> ChargerDaemon:
        return self.place.daemon

    @property
    def serial(self) -> str:
        return self.daemon.store.identity.serial

    def state(self) -> tuple[object, ...]:
        """What a ticket may change on either charger: the PIN configuration and the bonds."""
        return tuple(SecurityState.of(d.store).ticket_state for d in (self.daemon, self.other))

    def rejected(self) -> int:
        return sum(d.store.counters()[EventKind.TICKET_REJECTED] for d in (self.daemon, self.other))

    def logged_reason(self, charger: str) -> str:
        """The reason of the last ticket refusal the charger logged ("challenge: ...")."""
        daemon = self.other if charger == "other" else self.daemon
        for event in reversed(daemon.store.events(limit=20)):
            if event.kind == EventKind.TICKET_REJECTED:
                return event.detail.split(":")[0]
        return ""

    # ------------------------------------------------------------------ set-up and captures

    async def setup(self) -> None:
        bed = self.place.bed
        owner = await bed.phone("owner")
        self.links["owner"] = await owner.connect(self.serial, pin=str(self.place.pin))
        self.spare = await bed.phone("spare")
        spare_link = await self.spare.connect(self.serial, pin=str(self.place.pin))
        self.spare_address = str(spare_link.connection.self_address)
        await spare_link.disconnect()
        revoked = await bed.phone("revoked")
        self.links["revoked"] = await revoked.connect(self.serial, pin=str(self.place.pin))
        self.links["revoked-other"] = await revoked.connect(
            SECOND_SERIAL, pin=str(self.other.store.current_pin())
        )
        self.stranger = await self.place.attacker("unpaired")
        for writer, link, charger in (
            ("owner", "owner", "same"),
            ("revoked", "revoked", "same"),
            ("revoked", "revoked-other", "other"),
        ):
            self.ports[(writer, charger)] = await AdminPort.open(self.links[link].connection)

    async def capture(self, action: Action, args: dict[str, str]) -> None:
        """The owner uses a genuine ticket; the attacker pre-plays it on its own link first."""
        owner = self.links["owner"]
        blob = await self.authority.authorise(owner, action, args)
        self.replays.append(await self.replay(action.value, "pre-play", "revoked", blob))
        result = await owner.submit_ticket(blob)
        if not result.ok:
            self.problems.append(f"the owner's {action.value} was refused")
        self.captures.append(Capture(action.value, args, blob, locked=False))

    async def capture_owner_tickets(self) -> None:
        await self.capture(Action.LIST_PHONES, {})
        await self.capture(Action.CHANGE_PIN, {"pin": str(generate_pin(self.rng))})
        await self.capture(Action.CHANGE_PIN, {"next_epoch": "1"})
        await self.capture(Action.REMOVE_PHONE, {"address": self.spare_address})
        # The spare phone pairs again, so that a replayed removal would have a bond to remove.
        link = await self.spare.connect(self.serial, pin=str(self.place.pin))
        await link.disconnect()

    async def lock(self) -> None:
        """The lab fails as many times as the lockout allows: new pairings are locked out."""
        central = await self.place.attacker("locker")
        for _ in range(self.daemon.profile.lockout.failures):
            connection = await central.connect(self.daemon)
            pin = self.place.pin.passkey
            await central.attempt(connection, pin % (PASSKEY_SPACE - 1) + 1)
            await central.wait_disconnected(connection, 1.0)
            await central.hang_up(connection)
        if not self.daemon.info().locked:
            self.problems.append("the charger did not lock after the lab's failures")

    async def admit_member(self, name: str, capture: bool) -> bool:
        """A member's new phone, as the app does it while locked: admission ticket, then the
        PIN. With `capture`, the attacker gets the ticket and pre-plays it first."""

        async def admission(challenge: bytes) -> bytes:
            blob = self.authority.ticket(challenge, Action.ADMIT_PAIRING)
            if capture:
                self.replays.append(
                    await self.replay(Action.ADMIT_PAIRING.value, "pre-play", "unpaired", blob)
                )
                self.captures.append(Capture(Action.ADMIT_PAIRING.value, {}, blob, locked=True))
            return blob

        async def fleet_pin(_info: protocol.OpenInfo) -> str:
            return str(self.place.pin)

        phone = await self.place.bed.phone(name)
        link = await phone.connect(self.serial, pin=fleet_pin, admit=admission)
        try:
            return link.paired_now and bool(await link.status())
        finally:
            await link.disconnect()

    # ------------------------------------------------------------------ replays

    async def port(self, writer: str, charger: str) -> tuple[AdminPort, Connection | None]:
        """The writer's admin port. The unpaired central connects afresh for every write: the
        charger drops unencrypted links that idle (30 s) or stand in a newcomer's way."""
        if writer != "unpaired":
            return self.ports[(writer, charger)], None
        connection = await self.stranger.connect(self.daemon if charger == "same" else self.other)
        return await AdminPort.open(connection), connection

    async def replay(self, ticket: str, variant: str, writer: str, blob: bytes) -> Replay:
        charger = "other" if variant == "other charger" else "same"
        port, fresh = await self.port(writer, charger)
        locked = charger == "same" and self.daemon.info().locked
        before, rejected = self.state(), self.rejected()
        await port.read_challenge()  # a fresh, outstanding challenge on the writer's link
        error = await port.write(blob)
        result = await port.result()
        counted = self.rejected() > rejected
        paired_after = None
        if fresh is not None and locked:  # while locked: did the replay let the central in?
            outcome = await self.stranger.attempt(fresh, self.place.pin.passkey)
            paired_after = outcome.error
            await self.stranger.wait_disconnected(fresh, 1.0)
        if fresh is not None:
            await self.stranger.hang_up(fresh)
        if isinstance(result, AdminResult) and result.reason != "none":
            reason, detail = ("accepted" if result.ok else result.reason), result.detail
        else:  # no readable result (unpaired link): the write's ATT error is the answer
            code = error if error is not None else result if isinstance(result, int) else 0
            reason = "accepted" if error is None else f"att 0x{code:02X}"
            detail = ATT_DETAILS.get(code, "")
        return Replay(
            ticket=ticket,
            variant=variant,
            writer=writer,
            charger=charger,
            att_error=error,
            reason=reason,
            detail=detail,
            charger_reason=self.logged_reason(charger) if counted else "",
            accepted=error is None or (locked and fresh is not None and paired_after is None),
            changed=self.state() != before,
            counted=counted,
            paired_after=paired_after,
        )

    def plan(self, captures: list[Capture]) -> list[tuple[str, str, str, bytes]]:
        """(ticket, variant, writer, bytes) of every replay of these captures."""
        plan: list[tuple[str, str, str, bytes]] = []
        for capture in captures:
            name, blob = capture.action, capture.blob
            # An admission ticket is for unpaired links; the others for paired ones.
            altered_by = "unpaired" if name == Action.ADMIT_PAIRING.value else "revoked"
            plan += [(name, "same", writer, blob) for writer in ("owner", "revoked", "unpaired")]
            plan += [(name, v, altered_by, altered) for v, altered in variants(blob, self.rng)]
            plan += [(name, "other charger", w, blob) for w in ("revoked", "unpaired")]
        return plan

    async def replay_captures(self, locked: bool) -> None:
        captures = [c for c in self.captures if c.locked == locked]
        for ticket, variant, writer, blob in self.plan(captures):
            self.replays.append(await self.replay(ticket, variant, writer, blob))
        self.place.clock.advance(DEFAULT_LIFETIME + 1)
        for capture in captures:
            writer = "unpaired" if locked else "owner"
            self.replays.append(await self.replay(capture.action, "expired", writer, capture.blob))

    async def still_serving(self) -> None:
        """Unlocked: genuine tickets work, bonded phones are served on both chargers."""
        owner = self.links["owner"]
        listing = await owner.submit_ticket(
            await self.authority.authorise(owner, Action.LIST_PHONES)
        )
        phones = set(listing.phones)
        self.serving.update(
            owner_ticket_works=listing.ok and len(phones) == 3,
            spare_still_bonded=any(self.spare_address in p for p in phones),
            revoked_phone_served=bool(await self.links["revoked"].status()),
            other_charger_served=bool(await self.links["revoked-other"].status()),
        )


async def replay_trial(place: Arena, rng: random.Random) -> dict[str, Any]:
    other = await place.bed.charger(
        ChargerSpec(
            serial=SECOND_SERIAL, profile=place.daemon.profile.name, secret=rng.randbytes(32)
        ),
        name="other",
    )
    lab = ReplayLab(place, other, rng)
    await lab.setup()
    await lab.capture_owner_tickets()
    state = lab.state()
    await lab.replay_captures(locked=False)
    unchanged = lab.state() == state
    await lab.still_serving()
    await lab.lock()
    lab.serving["admission_works"] = await lab.admit_member("member", capture=True)
    await lab.replay_captures(locked=True)
    lab.serving["admission_still_works"] = await lab.admit_member("member2", capture=False)
    replays = lab.replays
    admissions = [r for r in replays if r.paired_after is not None]
    return {
        "captured": [c.action + ("" if not c.args else f" {sorted(c.args)}") for c in lab.captures],
        "ticket_sizes": [len(c.blob) for c in lab.captures],
        "replays": len(replays),
        "accepted": sum(1 for r in replays if r.accepted),
        "changed": sum(1 for r in replays if r.changed),
        "unchanged_overall": unchanged,
        "refused_cleanly": sum(1 for r in replays if r.refused_cleanly),
        "counted": sum(1 for r in replays if r.counted),
        "ticket_refusals": sum(1 for r in replays if r.att_error in TICKET_CODES),
        "admission_replays": len(admissions),
        "admission_replays_then_locked": sum(1 for r in admissions if r.paired_after == LOCKED),
        "reasons": dict(Counter(r.charger_reason or r.reason for r in replays)),
        "att_errors": dict(
            Counter("none" if r.att_error is None else f"0x{r.att_error:02X}" for r in replays)
        ),
        "by_kind": by_kind(replays),
        "serving": lab.serving,
        "problems": lab.problems,
        "records": [asdict(r) for r in replays],
    }


def by_kind(replays: list[Replay]) -> dict[str, dict[str, int]]:
    """What refused each kind of replay: the charger's logged reason, else the writer's view."""
    kinds: dict[str, Counter[str]] = {}
    for r in replays:
        kinds.setdefault(r.kind, Counter())[r.charger_reason or r.reason] += 1
    return {kind: dict(counts) for kind, counts in sorted(kinds.items())}


def trial_as_expected(record: dict[str, Any]) -> bool:
    return (
        record["accepted"] == 0
        and record["changed"] == 0
        and record["unchanged_overall"]
        and record["refused_cleanly"] == record["replays"]
        and record["counted"] == record["ticket_refusals"]
        and record["admission_replays_then_locked"] == record["admission_replays"] > 0
        and all(record["serving"].values())
        and not record["problems"]
    )


async def run(profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    """`trials` pairs of fresh chargers; every captured ticket replayed every way."""
    rng = random.Random(seed)
    records = []
    for _ in range(trials):
        async with arena(profile, rng) as place:
            records.append(await replay_trial(place, rng))
    for record in records:
        record["as_expected"] = trial_as_expected(record)
    reasons: Counter[str] = Counter()
    for record in records:
        reasons.update(record["reasons"])
    summary_ = {
        "trials": len(records),
        "replays": sum(r["replays"] for r in records),
        "accepted": sum(r["accepted"] for r in records),
        "changed_state": sum(r["changed"] for r in records),
        "refused_cleanly": sum(r["refused_cleanly"] for r in records),
        "counted_by_charger": sum(r["counted"] for r in records),
        "admission_replays": sum(r["admission_replays"] for r in records),
        "admission_replays_then_locked": sum(r["admission_replays_then_locked"] for r in records),
        "reasons": dict(sorted(reasons.items())),
        "still_serving": all(all(r["serving"].values()) for r in records),
        "trials_as_expected": sum(1 for r in records if r["as_expected"]),
    }
    as_expected = bool(records) and all(r["as_expected"] for r in records)
    verdict = (
        f"all {summary_['replays']} replayed, altered and moved tickets refused, nothing "
        f"changed, no replayed admission let a central past the lock "
        f"({summary_['admission_replays']} tried), chargers still serving"
        if as_expected
        else f"REPLAY PROBLEM: {summary_['accepted']} accepted, {summary_['changed_state']} "
        f"changed the state, {summary_['replays'] - summary_['refused_cleanly']} not refused "
        "cleanly, or a charger stopped serving (see the trials)"
    )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "parameters": {"flips": FLIPS, "truncations": TRUNCATIONS, "extensions": EXTENSIONS},
        "summary": summary_,
        "trials": records,
        "as_expected": as_expected,
        "verdict": verdict,
    }


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    s = report["summary"]
    reasons = ", ".join(f"{k} {v}" for k, v in s["reasons"].items())
    return [
        ("trials (as expected)", f"{s['trials']} ({s['trials_as_expected']})"),
        ("tickets written (pre-plays, replays, variants)", str(s["replays"])),
        ("accepted", str(s["accepted"])),
        ("changed PIN, epoch or bonds", str(s["changed_state"])),
        ("refused with a reason", str(s["refused_cleanly"])),
        ("counted by the charger (ticket_rejected)", str(s["counted_by_charger"])),
        (
            "admission replays, then still locked out",
            f"{s['admission_replays_then_locked']} of {s['admission_replays']}",
        ),
        ("refusal reasons (charger's log)", reasons),
        ("chargers and genuine tickets still serving", "yes" if s["still_serving"] else "NO"),
    ]
