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
    """Monotonic time each pairing the charger refused had started: a SYNCED commit came after
    the start and fsynced every earlier commit."""

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
    violations.extend(went_backwards(before, after, allowed=lost, unsynced=unsynced))
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
    return StateCheck(after, len(disk.bonds), tuple(violations), lost_phones, synced)


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
        yield f"bond {address} was lost (the workload deletes none)"


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
