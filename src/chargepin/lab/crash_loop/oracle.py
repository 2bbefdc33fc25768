"""The crash loop's oracle: which promises of the state file a kill broke. Pure, no I/O.

Given what the file held before the kill, what the phones saw before it (`Witness`) and what the
file holds now (`OnDisk`), list the violations. What "intact" means is what the daemon promises
(charger/daemon.py, `_record_failure`): a failed attempt is committed before its Pairing Failed
PDU is sent, and a bond before the charger serves anything protected over it. So every wrong PIN
a phone saw refused must be counted on disk (and, hardened, have moved the epoch), every lock a
phone was refused by must still be there, and every bond the charger proved it held (a protected
read succeeded) must survive, whole. What the phones did not see may be lost.

After a power cut (`power_cut=True`: only what was fsynced is on disk) a success may also be lost
once the phone saw it: the `pairing_ok` event and the bond commit ORDERED (core/durability.py),
so a cut may take back the last of them, but only those no SYNCED commit followed. Every refusal
a phone saw was such a commit (the charger commits a failure or a refusal SYNCED before its
Pairing Failed PDU leaves), and it fsyncs every commit before it: a bond confirmed before a
refused pairing started must survive any cut. The rest of the table of docs/SECURITY.md
("Durability of the pairing path") is checked as after a kill: failures, locks, epochs are
SYNCED and must all be there.

Owner tickets (`OwnerChange`: a phone revoked, a PIN changed) are SYNCED in both modes: once the
owner's phone read the charger's signed receipt, the change is on disk (a revoked bond gone, the
PIN the receipt names live or a later epoch, the PIN from before never again). A kill between the
ticket's write and its receipt may leave either outcome, never a mix: the bond gone exactly when
its `bond_removed` event is there, the charger pairing with the old or the new PIN exactly as its
`pin_changed` event says.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bumble.keys import PairingKeys

from chargepin.lab.security_state import SecurityState

BOND_KEY_SIZE = 16
"""Octets of an LTK and of an IRK (Core spec Vol 3 Part H 2.4.2)."""

LOCK_CLOCK_SLACK = 1.0
"""Seconds a lock may end before a refusal a phone saw: the phone's and the daemon's clocks are
read at slightly different instants."""


@dataclass(frozen=True)
class ConfirmedBond:
    """A bond the charger proved it held (it served a protected read): it must survive."""

    phone: str  # the phone's identity address, the charger's key for the bond
    ltk: str  # hex, as the phone stored it
    irk: str  # hex, the phone's identity IRK, which the charger stored


REMOVE_PHONE, CHANGE_PIN = "remove_phone", "change_pin"
"""The owner tickets the workload writes (core.tickets.Action values)."""

FORGET_BONDS = "change_pin forget_bonds"
"""A change_pin ticket with forget_bonds=1: the charger deletes every bond (the owner's too) in
the transaction that changes the PIN and records its one pin_changed event."""


@dataclass
class OwnerChange:
    """An owner ticket the workload wrote to the charger over the owner's bonded link."""

    action: str  # REMOVE_PHONE or CHANGE_PIN
    old_pin: str  # the PIN pairing needed just before the ticket was written
    new_pin: str = ""  # CHANGE_PIN: the PIN the ticket makes live
    phone: str = ""  # REMOVE_PHONE: the revoked phone's identity address (the bond's key)
    forgotten: dict[str, float] = field(default_factory=dict)
    """FORGET_BONDS: every bond in the file as the ticket went out (address -> its row's
    created time: a bond paired again after an acknowledged ticket is another row)."""
    sent_at: float = 0.0  # monotonic, as the ticket's write went out
    acknowledged: bool = False  # the owner's phone read the charger's signed receipt
    epoch: int | None = None  # the receipt's epoch and PIN generation
    generation: int | None = None
    interrupted: bool = False  # the kill came after the write went out, before the receipt
    receipt_s: float | None = None  # seconds from the write going out to the receipt read


@dataclass
class Witness:
    """What the phones saw before the kill, each noted the moment their own stack saw it."""

    wrong_pins: int = 0  # Pairing Failed 0x04/0x0B received from the charger
    locked_refusals: list[float] = field(default_factory=list)  # wall times of 0x09 received
    bond_changes: dict[str, ConfirmedBond | None] = field(default_factory=dict)  # None: forgot
    pairings_running: int = 0
    wrong_pins_accepted: int = 0  # pairings with a wrong PIN that succeeded: never expected
    anomalies: list[str] = field(default_factory=list)  # phone errors while the daemon ran
    paired_at: dict[str, float] = field(default_factory=dict)
    """Monotonic time each new bond (a pairing, then a protected read) was confirmed at, by
    phone; carried from the restart before this workload for its re-pairings."""
    synced_at: list[float] = field(default_factory=list)
    """Monotonic time each pairing the charger refused had started, and each owner ticket whose
    receipt came back was written: a SYNCED commit came after it and fsynced every earlier
    commit."""
    owner_changes: list[OwnerChange] = field(default_factory=list)

    def may_be_lost(self, phone: str) -> bool:
        """Whether a power cut may take back `phone`'s bond: it was made by a pairing (not
        proven durable by an earlier cut) and no refusal's pairing started after it."""
        paired = self.paired_at.get(phone)
        return paired is not None and not any(started > paired for started in self.synced_at)


@dataclass(frozen=True)
class OnDisk:
    """What the state file holds after a kill, read with the daemon down (`disk.read_disk`)."""

    state: SecurityState | None
    """As the store reads it; None when the store refused to open the file."""
    refused: str = ""
    """Why the store refused to open it."""
    unreadable: str = ""
    """Why SQLite itself could not read the file (then `integrity` and `bonds` are empty)."""
    integrity: tuple[str, ...] = ("ok",)
    """What `PRAGMA integrity_check` said."""
    bonds: Mapping[str, str] = field(default_factory=dict)
    """Every bond row read raw (address -> keys as JSON), also those the store would refuse."""


@dataclass(frozen=True)
class StateCheck:
    """The verdict on one state file after a kill."""

    after: SecurityState | None
    bonds_checked: int
    violations: tuple[str, ...]
    successes_lost: tuple[str, ...] = ()
    """Phones whose confirmed bond a power cut took back, as the table allows."""
    successes_synced: int = 0
    """Bonds a pairing made and a later refusal's SYNCED commit made durable: checked kept."""
    owner_applied: tuple[bool, ...] = ()
    """Per owner ticket the kill interrupted (written, no receipt): whether the file has it."""
    bonds_forgotten: tuple[str, ...] = ()
    """Phones whose bond a forget_bonds ticket deleted (acknowledged, or interrupted and in the
    file): no longer proven, the restart expects them refused and pairing again."""


def judge(
    before: SecurityState,
    disk: OnDisk,
    witness: Witness,
    confirmed: Mapping[str, ConfirmedBond],
    *,
    power_cut: bool = False,
) -> StateCheck:
    """The violations in `disk` after a kill, against what it held `before` and what the phones
    saw. `confirmed` are the bonds the charger proved before the kill. The profile is hardened,
    so every wrong PIN must also have moved the epoch. `power_cut`: the kill was a power cut,
    which may take back the successes `Witness.may_be_lost` names."""
    violations = file_problems(disk)
    accepted = (
        []
        if not witness.wrong_pins_accepted
        else [f"{witness.wrong_pins_accepted} pairings with a wrong PIN succeeded"]
    )
    after = disk.state
    if after is None:
        refused = f"the state file does not open: {disk.refused}"
        return StateCheck(None, len(disk.bonds), (refused, *violations, *accepted))
    lost = [
        address
        for address in before.addresses
        if power_cut and address not in after.addresses and witness.may_be_lost(address)
    ]
    unsynced = sum(map(witness.may_be_lost, witness.paired_at)) if power_cut else 0
    revoked = [change.phone for change in witness.owner_changes if change.phone]
    owner, applied = owner_problems(before, after, disk.bonds, witness, power_cut=power_cut)
    forgotten = forgotten_bonds(before, after, witness)
    allowed = [*lost, *revoked, *forgotten]
    violations.extend(went_backwards(before, after, allowed=allowed, unsynced=unsynced))
    violations.extend(owner)
    if len(after.bonds) > after.successes:
        violations.append(
            f"{len(after.bonds)} bonds on disk, {after.successes} pairing_ok events: a bond "
            "without its event"
        )
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
        if until is None or until < seen_at - LOCK_CLOCK_SLACK:
            violations.append(f"a phone was refused as locked at {seen_at:.3f}; the lock is gone")
    for bond in confirmed.values():
        if bond.phone in forgotten:
            continue  # owner_problems checks the forget_bonds ticket whole or absent
        problems = list(confirmed_problems(bond, disk.bonds))
        if problems and power_cut and witness.may_be_lost(bond.phone):
            lost.append(bond.phone)
        else:
            violations.extend(problems)
    violations.extend(accepted)
    synced = sum(
        bond.phone in witness.paired_at and not witness.may_be_lost(bond.phone)
        for bond in confirmed.values()
    )
    lost_phones = tuple(sorted(set(lost)))
    return StateCheck(
        after,
        len(disk.bonds),
        tuple(violations),
        lost_phones,
        synced,
        tuple(applied),
        tuple(sorted(forgotten)),
    )


def forgotten_bonds(before: SecurityState, after: SecurityState, witness: Witness) -> set[str]:
    """The phones a forget_bonds ticket deleted: acknowledged, or interrupted and applied (its
    pin_changed event on disk); not those that paired again after it (a new bond, checked)."""
    changed = after.pin_changes > before.pin_changes
    return {
        address
        for change in witness.owner_changes
        if change.action == FORGET_BONDS and (change.acknowledged or changed)
        for address in change.forgotten
        if witness.paired_at.get(address, 0.0) <= change.sent_at
    }


def owner_problems(
    before: SecurityState,
    after: SecurityState,
    rows: Mapping[str, str],
    witness: Witness,
    *,
    power_cut: bool = False,
) -> tuple[list[str], list[bool]]:
    """The owner tickets' rows of the table (SYNCED): an acknowledged revocation or PIN change
    is on disk; one the kill interrupted is there whole or not at all. Returns the violations
    and, per interrupted ticket, whether the file has it."""
    problems: list[str] = []
    applied: list[bool] = []
    removals = after.bond_removals - before.bond_removals
    for change in witness.owner_changes:
        if change.action == REMOVE_PHONE:
            gone = change.phone not in rows
            if change.acknowledged and not gone:
                problems.append(
                    f"phone {change.phone} was revoked (the owner read the signed receipt) and "
                    "its bond is still on the charger"
                )
            if change.interrupted:
                applied.append(removals > 0)
                lost = power_cut and witness.may_be_lost(change.phone)
                if removals > 0 and not gone:
                    problems.append(
                        f"a revocation half applied: its bond_removed event is on disk, phone "
                        f"{change.phone}'s bond too"
                    )
                if gone and removals == 0 and not lost:
                    problems.append(
                        f"a revocation half applied: phone {change.phone}'s bond is gone "
                        "without its bond_removed event"
                    )
            continue
        if change.action == FORGET_BONDS:
            problems.extend(forget_problems(before, after, change, witness, power_cut=power_cut))
        live = after.pin.digits
        if change.acknowledged and change.epoch is not None and change.generation is not None:
            now, receipt = (after.generation, after.epoch), (change.generation, change.epoch)
            if now < receipt:
                problems.append(
                    f"an acknowledged PIN change is lost: generation/epoch {now} on disk, "
                    f"{receipt} in its receipt"
                )
            elif now == receipt and live != change.new_pin:
                problems.append(
                    "an acknowledged PIN change is lost: the charger pairs with another PIN "
                    "than the one its receipt names"
                )
            if live == change.old_pin:
                problems.append("the PIN from before an acknowledged PIN change works again")
        if change.interrupted:
            changed = after.pin_changes > before.pin_changes
            applied.append(changed)
            expected = change.new_pin if changed else change.old_pin
            if live != expected:
                which = (
                    "the new"
                    if live == change.new_pin
                    else "the old"
                    if (live == change.old_pin)
                    else "neither the old nor the new"
                )
                problems.append(
                    f"a PIN change half applied: its pin_changed event is "
                    f"{'on disk' if changed else 'not on disk'}, the charger pairs with {which} "
                    "PIN"
                )
    return problems, applied


def forget_problems(
    before: SecurityState,
    after: SecurityState,
    change: OwnerChange,
    witness: Witness,
    *,
    power_cut: bool = False,
) -> Iterator[str]:
    """A forget_bonds ticket's bonds (its PIN is checked as any change_pin's): acknowledged,
    every bond the file held as it went out is gone (a phone may have paired again since: a
    new row); interrupted, all gone with its pin_changed event or all there without it."""
    kept = {
        bond.address for bond in after.bonds if change.forgotten.get(bond.address) == bond.created
    }
    changed = after.pin_changes > before.pin_changes
    if change.acknowledged and kept:
        yield (
            f"bonds forgotten by an acknowledged change_pin ticket are still on the charger: "
            f"{', '.join(sorted(kept))}"
        )
    if not change.interrupted:
        return
    if changed and kept:
        yield (
            f"a forget_bonds half applied: its pin_changed event is on disk, "
            f"{len(kept)} of its {len(change.forgotten)} bonds too"
        )
    gone = [
        address
        for address in change.forgotten
        if address not in kept and not (power_cut and witness.may_be_lost(address))
    ]
    if not changed and gone:
        yield (
            f"a forget_bonds half applied: no pin_changed event on disk, and {len(gone)} of its "
            f"{len(change.forgotten)} bonds are gone"
        )


def file_problems(disk: OnDisk) -> list[str]:
    """SQLite's own verdict, and every bond row that is not whole."""
    if disk.unreadable:
        return [f"SQLite cannot read the file: {disk.unreadable}"]
    integrity = list(disk.integrity)
    problems = [] if integrity == ["ok"] else [f"integrity_check: {'; '.join(integrity[:5])}"]
    for address, text in disk.bonds.items():
        problems.extend(bond_problems(address, text))
    return problems


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


def went_backwards(
    before: SecurityState,
    after: SecurityState,
    *,
    allowed: Iterable[str] = (),
    unsynced: int = 0,
) -> Iterator[str]:
    """What must never go backwards across a kill: counters, epoch, a lock, a bond. After a
    power cut the `allowed` bonds (unsynced re-pairings) may, and the success counter by at most
    the `unsynced` pairings a cut may take back."""
    if after.failures < before.failures:
        yield f"failures went backwards: {before.failures} -> {after.failures}"
    if after.locks < before.locks:
        yield f"lockouts went backwards: {before.locks} -> {after.locks}"
    if after.epoch < before.epoch:
        yield f"the epoch went backwards: {before.epoch} -> {after.epoch}"
    if after.generation < before.generation:
        yield f"the PIN generation went backwards: {before.generation} -> {after.generation}"
    previous = before.lockout.locked_until
    now = after.lockout.locked_until
    if previous is not None and (now is None or now < previous):
        yield f"the lock until {previous:.3f} was shortened or lost ({now})"
    if after.successes < before.successes - unsynced:
        yield f"pairing_ok events went backwards: {before.successes} -> {after.successes}"
    for address in sorted(set(before.addresses) - set(after.addresses) - set(allowed)):
        yield f"bond {address} was lost (no owner ticket revoked it)"


def confirmed_problems(bond: ConfirmedBond, rows: Mapping[str, str]) -> Iterator[str]:
    """A confirmed bond must still be there with the keys the phone holds."""
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
