"""The crash loop's oracle on hand-made inputs: no radio, no daemon, no file.

Each case gives the state before a kill, what the phones saw and what the disk holds after it,
and expects the oracle to name every broken promise (and nothing when none was broken).
"""

from __future__ import annotations

import dataclasses
import json

from bumble.keys import PairingKeys

from chargepin.core.lockout import LockoutState
from chargepin.core.pin import Pin
from chargepin.lab.crash_loop import (
    ConfirmedBond,
    OnDisk,
    OwnerChange,
    Witness,
    bond_problems,
    judge,
)
from chargepin.lab.crash_loop.oracle import CHANGE_PIN, FORGET_BONDS, REMOVE_PHONE
from chargepin.lab.security_state import SecurityState
from chargepin.radio.keystore import BondInfo

PHONE = "F1:22:33:44:55:66"
OTHER = "D4:11:22:33:44:55"
LTK = bytes(range(16))
IRK = bytes(range(16, 32))
NOW = 1_700_000_000.0
LOCKED = LockoutState(failures=(), locked_from=NOW, locked_until=NOW + 300, recent_lockouts=(NOW,))


def keys_text(ltk: bytes | None = LTK, irk: bytes | None = IRK, authenticated: bool = True) -> str:
    keys = PairingKeys()
    keys.address_type = 1
    if ltk is not None:
        keys.ltk = PairingKeys.Key(value=ltk, authenticated=authenticated)
    if irk is not None:
        keys.irk = PairingKeys.Key(value=irk, authenticated=True)
    return json.dumps(keys.to_dict())


def state(
    *,
    failures: int = 0,
    locks: int = 0,
    epoch: int = 0,
    lockout: LockoutState | None = None,
    bonds: tuple[str, ...] = (),
    generation: int = 0,
    successes: int | None = None,
) -> SecurityState:
    """A state; each bond comes with its `pairing_ok` event unless `successes` says otherwise."""
    return SecurityState(
        pin_enabled=True,
        epoch=epoch,
        generation=generation,
        pin=Pin("385172"),
        custom_pin=None,
        lockout=lockout or LockoutState(),
        failures=failures,
        locks=locks,
        bonds=tuple(BondInfo(address, True, NOW) for address in sorted(bonds)),
        successes=len(bonds) if successes is None else successes,
    )


def disk(after: SecurityState | None, **rows: str) -> OnDisk:
    """The file after the kill: `after` as the store reads it, and its bond rows (address ->
    keys JSON; `_` in a keyword stands for `:`)."""
    bonds = {address.replace("_", ":"): text for address, text in rows.items()}
    if after is not None and not rows:
        bonds = {address: keys_text() for address in after.addresses}
    return OnDisk(after, bonds=bonds)


CONFIRMED = {PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())}


# ------------------------------------------------------------------------------ nothing broken


def test_an_unchanged_file_passes() -> None:
    before = state(bonds=(PHONE,))
    check = judge(before, disk(before), Witness(), CONFIRMED)
    assert check.violations == ()
    assert check.after == before
    assert check.bonds_checked == 1


def test_a_file_that_moved_forwards_past_what_the_phones_saw_passes() -> None:
    """A failure the phones never saw refused (the kill came first) may be on disk or not."""
    before = state(failures=2, epoch=2)
    after = state(failures=5, locks=1, epoch=5, lockout=LOCKED, bonds=(PHONE,))
    witness = Witness(wrong_pins=2, locked_refusals=[NOW + 10])
    assert judge(before, disk(after), witness, CONFIRMED).violations == ()


def test_a_lock_may_end_within_the_clock_slack_of_a_refusal() -> None:
    """The phone and the daemon read their clocks at slightly different instants."""
    after = state(lockout=LOCKED)
    witness = Witness(locked_refusals=[NOW + 300.5])
    assert judge(state(), disk(after), witness, {}).violations == ()


def test_an_unconfirmed_bond_may_be_lost_only_if_the_file_never_held_it() -> None:
    """A pairing the phone finished, the charger never stored: nothing was promised."""
    before = state()
    witness = Witness(bond_changes={PHONE: ConfirmedBond(PHONE, LTK.hex(), IRK.hex())})
    assert judge(before, disk(before), witness, {}).violations == ()


# ------------------------------------------------------------------------------ what the phones saw


def test_wrong_pins_the_phones_saw_refused_must_be_counted_and_move_the_epoch() -> None:
    before = state(failures=3, epoch=3)
    after = state(failures=4, epoch=4)
    violations = judge(before, disk(after), Witness(wrong_pins=2), {}).violations
    assert violations == (
        "the phones saw 2 wrong PINs refused, the file counts 1",
        "the phones saw 2 wrong PINs refused, the epoch moved 1",
    )


def test_a_lock_a_phone_was_refused_by_must_still_be_there() -> None:
    seen = NOW + 10
    violations = judge(state(), disk(state()), Witness(locked_refusals=[seen]), {}).violations
    assert violations == (f"a phone was refused as locked at {seen:.3f}; the lock is gone",)
    ended_early = dataclasses.replace(LOCKED, locked_until=seen - 2.0)
    after = state(lockout=ended_early)
    assert len(judge(state(), disk(after), Witness(locked_refusals=[seen]), {}).violations) == 1


def test_a_pairing_with_a_wrong_pin_that_succeeded_is_reported() -> None:
    witness = Witness(wrong_pins_accepted=1)
    violations = judge(state(), disk(state()), witness, {}).violations
    assert violations == ("1 pairings with a wrong PIN succeeded",)


# ------------------------------------------------------------------------------ went backwards


def test_a_file_restored_from_an_older_copy_is_reported_in_full() -> None:
    before = state(failures=5, locks=1, epoch=5, lockout=LOCKED, bonds=(PHONE,), generation=2)
    violations = judge(before, disk(state()), Witness(), {}).violations
    assert violations[:7] == (
        "failures went backwards: 5 -> 0",
        "lockouts went backwards: 1 -> 0",
        "the epoch went backwards: 5 -> 0",
        "the PIN generation went backwards: 2 -> 0",
        f"the lock until {NOW + 300:.3f} was shortened or lost (None)",
        "pairing_ok events went backwards: 1 -> 0",
        f"bond {PHONE} was lost (no owner ticket revoked it)",
    )
    # The differences then fall short of what the phones saw (none): said again, as counts.
    assert violations[7:] == (
        "the phones saw 0 wrong PINs refused, the file counts -5",
        "the phones saw 0 wrong PINs refused, the epoch moved -5",
    )


def test_a_shortened_lock_is_reported() -> None:
    before = state(lockout=LOCKED)
    shorter = state(lockout=dataclasses.replace(LOCKED, locked_until=NOW + 60))
    violations = judge(before, disk(shorter), Witness(), {}).violations
    assert violations == (f"the lock until {NOW + 300:.3f} was shortened or lost ({NOW + 60})",)


# ------------------------------------------------------------------------------ bonds


def test_a_confirmed_bond_must_survive_with_the_phones_keys() -> None:
    gone = judge(state(), disk(state()), Witness(), CONFIRMED).violations
    assert gone == (f"bond {PHONE} was confirmed by a protected read, and is gone",)

    after = state(bonds=(PHONE,))
    other_keys = disk(after, F1_22_33_44_55_66=keys_text(ltk=bytes(16), irk=bytes(16)))
    assert judge(state(), other_keys, Witness(), CONFIRMED).violations == (
        f"bond {PHONE} holds another LTK than the phone's",
        f"bond {PHONE} holds another IRK than the phone's",
    )


def test_a_bond_without_its_event_is_reported() -> None:
    """The `pairing_ok` event commits before the bond: a bond on disk always has its event."""
    after = state(bonds=(PHONE, OTHER), successes=1)
    assert judge(state(), disk(after), Witness(), {}).violations == (
        "2 bonds on disk, 1 pairing_ok events: a bond without its event",
    )


# ------------------------------------------------------------------------------ power cut


def test_a_power_cut_may_take_back_a_success_no_refusal_followed() -> None:
    """The bond and its event commit ORDERED: with no SYNCED commit after them, a cut loses
    both, and the phone pairs again (counted, not a violation; a kill -9 may not)."""
    witness = Witness(paired_at={PHONE: 10.0}, synced_at=[9.0])  # a refusal, but before it
    check = judge(state(), disk(state()), witness, CONFIRMED, power_cut=True)
    assert check.violations == () and check.successes_lost == (PHONE,)
    kill = judge(state(), disk(state()), witness, CONFIRMED)
    assert kill.violations == (f"bond {PHONE} was confirmed by a protected read, and is gone",)
    # Lost as a re-pairing replacing an older bond: the row holds the old keys.
    old_keys = disk(state(bonds=(PHONE,)), F1_22_33_44_55_66=keys_text(ltk=bytes(16)))
    check = judge(state(bonds=(PHONE,)), old_keys, witness, CONFIRMED, power_cut=True)
    assert check.violations == () and check.successes_lost == (PHONE,)


def test_a_success_a_refusal_followed_must_survive_a_power_cut() -> None:
    """The refusal's SYNCED commit fsynced every commit before it, the bond's included."""
    witness = Witness(wrong_pins=1, paired_at={PHONE: 10.0}, synced_at=[11.0])
    after = state(failures=1, epoch=1)
    check = judge(state(), disk(after), witness, CONFIRMED, power_cut=True)
    assert check.violations == (f"bond {PHONE} was confirmed by a protected read, and is gone",)
    assert check.successes_lost == () and check.successes_synced == 1
    kept = state(failures=1, epoch=1, bonds=(PHONE,))
    check = judge(state(), disk(kept), witness, CONFIRMED, power_cut=True)
    assert check.violations == () and check.successes_synced == 1


def test_a_bond_from_before_the_workload_may_be_lost_only_if_a_re_pairing_made_it() -> None:
    """A bond the file held before the workload was on disk after the last cut, unless the
    restart since made it by pairing again (carried in `paired_at`)."""
    before = state(bonds=(PHONE,))
    after = state(successes=1)
    lost = judge(before, disk(after), Witness(), {}, power_cut=True).violations
    assert lost == (f"bond {PHONE} was lost (no owner ticket revoked it)",)
    carried = Witness(paired_at={PHONE: 1.0})
    check = judge(before, disk(after), carried, {}, power_cut=True)
    assert check.violations == () and check.successes_lost == (PHONE,)
    refused_since = Witness(paired_at={PHONE: 1.0}, synced_at=[2.0])
    assert judge(before, disk(after), refused_since, {}, power_cut=True).violations == lost
    # Its event may go with it, and no other.
    no_event = state()
    assert judge(before, disk(no_event), carried, {}, power_cut=True).violations == ()
    assert judge(
        state(bonds=(PHONE,), successes=2), disk(no_event), carried, {}, power_cut=True
    ).violations == ("pairing_ok events went backwards: 2 -> 0",)


def test_a_power_cut_never_excuses_a_lost_failure() -> None:
    before = state(failures=3, epoch=3)
    violations = judge(before, disk(before), Witness(wrong_pins=1), {}, power_cut=True).violations
    assert violations == (
        "the phones saw 1 wrong PINs refused, the file counts 0",
        "the phones saw 1 wrong PINs refused, the epoch moved 0",
    )


def test_torn_bond_rows_are_named() -> None:
    whole = keys_text()
    after = state(bonds=(PHONE, OTHER))
    torn = disk(
        after,
        F1_22_33_44_55_66=whole[: len(whole) // 2],
        D4_11_22_33_44_55=json.dumps({"address_type": 1, "ltk": {"value": "00ff"}}),
    )
    violations = judge(state(), torn, Witness(), CONFIRMED).violations
    assert violations[0].startswith(f"bond {PHONE} is not decodable by the key store")
    assert violations[1:] == (
        f"bond {OTHER} has no complete LTK",
        f"bond {OTHER} has no complete IRK",
        f"bond {OTHER} has an unauthenticated LTK (no PIN was used)",
    )


def test_bond_parts_are_each_required() -> None:
    assert bond_problems(PHONE, keys_text()) == []
    assert bond_problems(PHONE, keys_text(authenticated=False)) == [
        f"bond {PHONE} has an unauthenticated LTK (no PIN was used)"
    ]
    assert bond_problems(PHONE, keys_text(ltk=LTK[:8], irk=None)) == [
        f"bond {PHONE} has no complete LTK",
        f"bond {PHONE} has no complete IRK",
    ]


# ------------------------------------------------------------------------------ the file itself


def test_a_file_the_store_refuses_is_reported_with_its_damage() -> None:
    refused = OnDisk(
        None,
        refused="bond F1:22:33:44:55:66 is damaged; restore the file",
        integrity=("*** in database main ***", "Page 3: btreeInitPage() returns error code 11"),
        bonds={PHONE: "{"},
    )
    check = judge(state(), refused, Witness(wrong_pins_accepted=1), CONFIRMED)
    assert check.after is None
    assert check.bonds_checked == 1
    assert check.violations[0] == (
        "the state file does not open: bond F1:22:33:44:55:66 is damaged; restore the file"
    )
    assert check.violations[1] == (
        "integrity_check: *** in database main ***; Page 3: btreeInitPage() returns error code 11"
    )
    assert check.violations[2].startswith(f"bond {PHONE} is not decodable")
    assert check.violations[3:] == ("1 pairings with a wrong PIN succeeded",)


def test_a_file_sqlite_cannot_read_is_reported() -> None:
    unreadable = OnDisk(
        None, refused="not a state file", unreadable="file is not a database", integrity=()
    )
    check = judge(state(), unreadable, Witness(), {})
    assert check.violations == (
        "the state file does not open: not a state file",
        "SQLite cannot read the file: file is not a database",
    )
    assert check.bonds_checked == 0


# ------------------------------------------------------------------------------ owner tickets

OLD_PIN, NEW_PIN = "385172", "604913"


def revoked(phone: str = OTHER, **change: bool) -> Witness:
    """The owner revoked `phone` (a remove_phone ticket): `acknowledged` or `interrupted`."""
    return Witness(owner_changes=[OwnerChange(REMOVE_PHONE, OLD_PIN, phone=phone, **change)])


def test_an_acknowledged_revocation_must_survive_a_kill_and_a_power_cut() -> None:
    """SYNCED: once the owner read the signed receipt, the revoked bond is gone for good."""
    before = state(bonds=(PHONE, OTHER))
    removed = dataclasses.replace(state(bonds=(PHONE,), successes=2), bond_removals=1)
    for power_cut in (False, True):
        check = judge(before, disk(removed), revoked(acknowledged=True), {}, power_cut=power_cut)
        assert check.violations == ()
        back = judge(before, disk(before), revoked(acknowledged=True), {}, power_cut=power_cut)
        assert back.violations == (
            f"phone {OTHER} was revoked (the owner read the signed receipt) and its bond is "
            "still on the charger",
        )


def test_an_acknowledged_owner_ticket_makes_the_successes_before_it_durable() -> None:
    """Its SYNCED commit fsyncs every ORDERED one before it (the workload notes its write in
    `synced_at`): a bond confirmed before it may not be lost to a cut."""
    witness = revoked(acknowledged=True)
    witness.paired_at[PHONE] = 10.0
    witness.synced_at.append(11.0)
    removed = dataclasses.replace(state(successes=2), bond_removals=1)
    check = judge(state(bonds=(OTHER,)), disk(removed), witness, CONFIRMED, power_cut=True)
    assert check.violations == (f"bond {PHONE} was confirmed by a protected read, and is gone",)


def test_a_revocation_the_kill_cut_off_is_whole_or_absent() -> None:
    before = state(bonds=(PHONE, OTHER))
    removed = dataclasses.replace(state(bonds=(PHONE,), successes=2), bond_removals=1)
    cut_off = revoked(interrupted=True)
    applied = judge(before, disk(removed), cut_off, {})
    assert applied.violations == () and applied.owner_applied == (True,)
    absent = judge(before, disk(before), cut_off, {})
    assert absent.violations == () and absent.owner_applied == (False,)
    no_event = judge(before, disk(state(bonds=(PHONE,), successes=2)), cut_off, {})
    assert no_event.violations == (
        f"a revocation half applied: phone {OTHER}'s bond is gone without its bond_removed event",
    )
    event_only = judge(before, disk(dataclasses.replace(before, bond_removals=1)), cut_off, {})
    assert event_only.violations == (
        f"a revocation half applied: its bond_removed event is on disk, phone {OTHER}'s bond too",
    )


def test_a_revoked_bond_may_go_without_its_event_only_as_an_unsynced_pairing() -> None:
    """A power cut may take back the bond of a pairing no SYNCED commit followed, revoked or
    not: then the bond is gone and no bond_removed event says so."""
    witness = revoked(interrupted=True)
    witness.paired_at[OTHER] = 10.0
    before, after = state(bonds=(PHONE, OTHER)), state(bonds=(PHONE,), successes=2)
    assert judge(before, disk(after), witness, {}, power_cut=True).violations == ()
    assert judge(before, disk(after), witness, {}).violations != ()


def pin_changed(
    *, acknowledged: bool = False, interrupted: bool = False, epoch: int = 0
) -> Witness:
    change = OwnerChange(CHANGE_PIN, OLD_PIN, new_pin=NEW_PIN, interrupted=interrupted)
    if acknowledged:
        change.acknowledged, change.epoch, change.generation = True, epoch, 0
    return Witness(owner_changes=[change])


def test_an_acknowledged_pin_change_must_survive() -> None:
    """The receipt names the epoch and the PIN: the file has them, or a later epoch, and the
    PIN from before the change never works again."""
    before = state()
    new = dataclasses.replace(state(), pin=Pin(NEW_PIN), custom_pin=Pin(NEW_PIN), pin_changes=1)
    rotated = dataclasses.replace(state(epoch=1, failures=1), pin=Pin("271828"), pin_changes=1)
    acknowledged = pin_changed(acknowledged=True)
    for power_cut in (False, True):
        assert judge(before, disk(new), acknowledged, {}, power_cut=power_cut).violations == ()
        assert judge(before, disk(rotated), acknowledged, {}, power_cut=power_cut).violations == ()
        lost = judge(before, disk(before), acknowledged, {}, power_cut=power_cut).violations
        assert lost == (
            "an acknowledged PIN change is lost: the charger pairs with another PIN than the "
            "one its receipt names",
            "the PIN from before an acknowledged PIN change works again",
        )
    moved = pin_changed(acknowledged=True, epoch=2)
    behind = dataclasses.replace(state(epoch=1), pin=Pin(NEW_PIN), pin_changes=1)
    assert judge(state(epoch=1), disk(behind), moved, {}).violations == (
        "an acknowledged PIN change is lost: generation/epoch (0, 1) on disk, (0, 2) in its "
        "receipt",
    )


def test_a_pin_change_the_kill_cut_off_is_whole_or_absent() -> None:
    """Either the old PIN and no pin_changed event, or the new PIN and its event: never a PIN
    changed without its event, or an event for a PIN that did not change."""
    before = state()
    cut_off = pin_changed(interrupted=True)
    new = dataclasses.replace(state(), pin=Pin(NEW_PIN), pin_changes=1)
    applied = judge(before, disk(new), cut_off, {})
    assert applied.violations == () and applied.owner_applied == (True,)
    absent = judge(before, disk(before), cut_off, {})
    assert absent.violations == () and absent.owner_applied == (False,)
    no_event = dataclasses.replace(new, pin_changes=0)
    assert judge(before, disk(no_event), cut_off, {}).violations == (
        "a PIN change half applied: its pin_changed event is not on disk, the charger pairs "
        "with the new PIN",
    )
    event_only = dataclasses.replace(before, pin_changes=1)
    assert judge(before, disk(event_only), cut_off, {}).violations == (
        "a PIN change half applied: its pin_changed event is on disk, the charger pairs with "
        "the old PIN",
    )


def forgot(*, acknowledged: bool = False, interrupted: bool = False) -> Witness:
    """A change_pin ticket with forget_bonds=1, written as the file held PHONE's and OTHER's
    bonds (the owner's own among them: the charger deletes them all)."""
    change = OwnerChange(
        FORGET_BONDS,
        OLD_PIN,
        new_pin=NEW_PIN,
        forgotten={PHONE: NOW, OTHER: NOW},
        sent_at=20.0,
        interrupted=interrupted,
    )
    if acknowledged:
        change.acknowledged, change.epoch, change.generation = True, 0, 0
    return Witness(owner_changes=[change])


def forgotten(*bonds: str) -> SecurityState:
    """The file with the new PIN and its pin_changed event, and `bonds` (of the 2 paired)."""
    after = state(bonds=bonds, successes=2)
    return dataclasses.replace(after, pin=Pin(NEW_PIN), custom_pin=Pin(NEW_PIN), pin_changes=1)


def test_an_acknowledged_forget_bonds_deletes_every_bond_for_good() -> None:
    """SYNCED: once the owner read the receipt, no bond the file held as the ticket went out is
    there (a phone that paired again since has a new row), and the new PIN holds."""
    before = state(bonds=(PHONE, OTHER))
    acknowledged = forgot(acknowledged=True)
    for power_cut in (False, True):
        check = judge(before, disk(forgotten()), acknowledged, CONFIRMED, power_cut=power_cut)
        assert check.violations == () and check.bonds_forgotten == (OTHER, PHONE)
        kept = judge(before, disk(forgotten(PHONE)), acknowledged, {}, power_cut=power_cut)
        assert kept.violations == (
            f"bonds forgotten by an acknowledged change_pin ticket are still on the charger: "
            f"{PHONE}",
        )
        lost = judge(before, disk(before), acknowledged, {}, power_cut=power_cut).violations
        assert lost == (
            f"bonds forgotten by an acknowledged change_pin ticket are still on the charger: "
            f"{OTHER}, {PHONE}",
            "an acknowledged PIN change is lost: the charger pairs with another PIN than the "
            "one its receipt names",
            "the PIN from before an acknowledged PIN change works again",
        )
    # The owner paired again with the new PIN after the receipt: a new row, proven, kept.
    again = forgot(acknowledged=True)
    again.paired_at[PHONE] = 30.0
    repaired = forgotten(PHONE)
    repaired = dataclasses.replace(repaired, bonds=(BondInfo(PHONE, True, NOW + 5),), successes=3)
    check = judge(before, disk(repaired), again, CONFIRMED)
    assert check.violations == () and check.bonds_forgotten == (OTHER,)
    assert judge(before, disk(state(bonds=(OTHER,))), again, CONFIRMED).violations != ()


def test_a_forget_bonds_the_kill_cut_off_is_whole_or_absent() -> None:
    """All the bonds gone with the new PIN and its pin_changed event, or none of the three."""
    before = state(bonds=(PHONE, OTHER))
    cut_off = forgot(interrupted=True)
    for power_cut in (False, True):
        applied = judge(before, disk(forgotten()), cut_off, CONFIRMED, power_cut=power_cut)
        assert applied.violations == () and applied.owner_applied == (True,)
        assert applied.bonds_forgotten == (OTHER, PHONE)
        absent = judge(before, disk(before), cut_off, CONFIRMED, power_cut=power_cut)
        assert absent.violations == () and absent.owner_applied == (False,)
        assert absent.bonds_forgotten == ()
        half = judge(before, disk(forgotten(PHONE)), cut_off, CONFIRMED, power_cut=power_cut)
        assert half.violations == (
            "a forget_bonds half applied: its pin_changed event is on disk, 1 of its 2 bonds too",
        )
    unsaid = judge(before, disk(state(bonds=(PHONE,), successes=2)), cut_off, CONFIRMED)
    assert unsaid.violations == (
        f"bond {OTHER} was lost (no owner ticket revoked it)",
        "a forget_bonds half applied: no pin_changed event on disk, and 1 of its 2 bonds are gone",
    )
    pin_only = dataclasses.replace(before, pin=Pin(NEW_PIN), custom_pin=Pin(NEW_PIN))
    assert judge(before, disk(pin_only), cut_off, CONFIRMED).violations == (
        "a PIN change half applied: its pin_changed event is not on disk, the charger pairs "
        "with the new PIN",
    )
