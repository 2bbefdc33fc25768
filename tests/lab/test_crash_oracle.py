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
from chargepin.lab.crash_loop import ConfirmedBond, OnDisk, Witness, bond_problems, judge
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
        f"bond {PHONE} was lost (the workload deletes none)",
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
    assert lost == (f"bond {PHONE} was lost (the workload deletes none)",)
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
