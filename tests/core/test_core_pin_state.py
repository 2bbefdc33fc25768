"""The PIN state (chargepin.core.pin_state): what owner actions do, and reconciliation.

The charger applies `apply` to its stored state, the fleet predicts with it; reconciliation
must then recognise the charger's state from what it publishes, whatever happened in between.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core.epochs import epoch_pin
from chargepin.core.errors import InvalidConfig, WeakPin
from chargepin.core.pin import Pin
from chargepin.core.pin_state import (
    Observed,
    PinState,
    apply,
    commit_receipt,
    reconcile,
    shows,
)
from chargepin.core.tickets import Action

SECRET = bytes(range(32))
SERIAL = "CP-0001"
CUSTOM = Pin("482915")


def published(state: PinState, *, signed: bool = False) -> Observed:
    """What a charger in `state` shows in its open info (or signs in a receipt)."""
    return Observed(
        state.epoch, state.fingerprint(SECRET, SERIAL), state.enabled, signed, state.generation
    )


def test_the_live_pin_is_the_custom_one_or_the_epochs() -> None:
    assert PinState(True, 4).live_pin(SECRET, SERIAL) == epoch_pin(SECRET, SERIAL, 4)
    assert PinState(True, 4, CUSTOM).live_pin(SECRET, SERIAL) == CUSTOM


def test_a_rotation_moves_on_and_drops_the_custom_pin() -> None:
    assert PinState(True, 4, CUSTOM).rotated() == PinState(True, 5, None)
    assert PinState(True, 4, CUSTOM).advanced_to(4) == PinState(True, 4, CUSTOM)
    assert PinState(False, 4, CUSTOM).advanced_to(9) == PinState(False, 9, None)
    with pytest.raises(InvalidConfig, match="cannot go back from 4 to 3"):
        PinState(True, 4).advanced_to(3)


@pytest.mark.parametrize(
    ("action", "args", "before", "after"),
    [
        (Action.ENABLE_PIN, {}, PinState(False, 3), PinState(True, 3)),
        (Action.ENABLE_PIN, {"pin": "482915"}, PinState(False, 3), PinState(True, 3, CUSTOM)),
        (Action.CHANGE_PIN, {"pin": "482915"}, PinState(True, 3), PinState(True, 3, CUSTOM)),
        (Action.CHANGE_PIN, {"next_epoch": "1"}, PinState(True, 3, CUSTOM), PinState(True, 4)),
        (Action.CHANGE_PIN, {}, PinState(True, 3), PinState(True, 4)),
        (Action.DISABLE_PIN, {}, PinState(True, 3, CUSTOM), PinState(False, 3, CUSTOM)),
        (Action.LIST_PHONES, {}, PinState(True, 3, CUSTOM), PinState(True, 3, CUSTOM)),
        (Action.REMOVE_PHONE, {"all": "1"}, PinState(True, 3), PinState(True, 3)),
        (Action.ADMIT_PAIRING, {}, PinState(True, 3), PinState(True, 3)),
        (Action.REKEY, {}, PinState(True, 3, CUSTOM), PinState(True, 3, None, 1)),
        (Action.REKEY, {}, PinState(False, 3, None, 4), PinState(False, 3, None, 5)),
        (Action.CHANGE_PIN, {}, PinState(True, 3, None, 2), PinState(True, 4, None, 2)),
        (Action.ENABLE_PIN, {}, PinState(False, 3, None, 2), PinState(True, 3, None, 2)),
    ],
)
def test_what_each_action_does(
    action: Action, args: dict[str, str], before: PinState, after: PinState
) -> None:
    assert apply(action, args, before) == after


def test_a_weak_custom_pin_is_refused() -> None:
    with pytest.raises(WeakPin):
        apply(Action.CHANGE_PIN, {"pin": "123456"}, PinState(True, 3))


def test_a_pending_change_the_charger_applied_is_committed() -> None:
    committed = PinState(True, 3)
    pending = apply(Action.CHANGE_PIN, {"pin": "482915"}, committed)
    outcome = reconcile(SECRET, SERIAL, published(pending), committed, pending)
    assert (outcome.live, outcome.committed, outcome.pending) == ("pending", pending, None)


def test_a_pending_change_the_charger_never_saw_stays_pending() -> None:
    committed = PinState(True, 3)
    pending = apply(Action.CHANGE_PIN, {}, committed)
    outcome = reconcile(SECRET, SERIAL, published(committed), committed, pending)
    assert (outcome.live, outcome.committed, outcome.pending) == ("committed", committed, pending)


def test_a_rotation_after_failures_is_taken_over_and_drops_the_custom_pin() -> None:
    committed = PinState(True, 3, CUSTOM)
    charger = committed.rotated().rotated()
    outcome = reconcile(SECRET, SERIAL, published(charger), committed, None)
    assert (outcome.live, outcome.committed) == ("committed", PinState(True, 5))


def test_open_info_alone_never_switches_the_pin_off() -> None:
    committed = PinState(True, 3)
    claim = Observed(4, PinState(False, 4).fingerprint(SECRET, SERIAL), False)
    outcome = reconcile(SECRET, SERIAL, claim, committed, None)
    assert (outcome.live, outcome.committed) == ("unknown", committed)
    signed = Observed(4, claim.fingerprint, False, signed=True)
    assert reconcile(SECRET, SERIAL, signed, committed, None).committed == PinState(False, 4)


def test_a_wrong_fingerprint_is_unknown() -> None:
    committed = PinState(True, 3)
    seen = Observed(3, b"\0" * 8, True)
    assert not shows(SECRET, SERIAL, committed, seen)
    assert reconcile(SECRET, SERIAL, seen, committed, None).live == "unknown"


def test_a_receipt_commits_at_its_epoch_or_the_later_one_seen_since() -> None:
    committed = PinState(True, 3)
    pending = apply(Action.CHANGE_PIN, {"pin": "482915"}, committed)
    applied = published(PinState(True, 3, CUSTOM), signed=True)
    assert commit_receipt(committed, pending, applied) == PinState(True, 3, CUSTOM)
    seen_later = PinState(True, 6)
    assert commit_receipt(seen_later, pending, applied) == PinState(True, 6)


actions = st.sampled_from(
    [
        (Action.ENABLE_PIN, {}),
        (Action.ENABLE_PIN, {"pin": "482915"}),
        (Action.CHANGE_PIN, {"pin": "093817"}),
        (Action.CHANGE_PIN, {"next_epoch": "1"}),
        (Action.DISABLE_PIN, {}),
        (Action.REMOVE_PHONE, {"all": "1"}),
        (Action.REKEY, {}),
    ]
)


@given(
    start=st.builds(
        PinState,
        st.booleans(),
        st.integers(0, 1000),
        st.sampled_from([None, CUSTOM]),
        st.integers(0, 3),
    ),
    action=actions,
    rotations=st.integers(0, 3),
)
def test_the_fleet_always_recognises_what_the_charger_did(
    start: PinState, action: tuple[Action, dict[str, str]], rotations: int
) -> None:
    """The fleet predicts with `apply`; the charger applies it, then maybe rotates after
    failures: reconciling with what the charger publishes lands on the charger's state."""
    pending = apply(*action, start)
    charger = pending
    for _ in range(rotations):
        charger = charger.rotated()
    outcome = reconcile(SECRET, SERIAL, published(charger), start, pending)
    assert outcome.live == "pending"
    assert outcome.committed.epoch == charger.epoch
    assert outcome.committed.live_pin(SECRET, SERIAL) == charger.live_pin(SECRET, SERIAL)
    assert outcome.committed.epoch >= start.epoch
    assert outcome.committed.generation == charger.generation


def test_a_rekey_moves_to_pins_nobody_has_seen() -> None:
    before = PinState(True, 3, CUSTOM)
    after = apply(Action.REKEY, {}, before)
    assert (after.generation, after.epoch, after.custom_pin) == (1, 3, None)
    old = {PinState(True, 3 + n).live_pin(SECRET, SERIAL) for n in range(50)}
    assert after.live_pin(SECRET, SERIAL) == epoch_pin(SECRET, SERIAL, 3, 1)
    assert after.rotated().generation == 1  # a rotation stays in the new generation
    assert after.live_pin(SECRET, SERIAL) not in old | {CUSTOM}


def test_the_generation_caps_at_a_u32() -> None:
    with pytest.raises(InvalidConfig, match="generation must be a whole number"):
        PinState(True, 0, None, 2**32 - 1).rekeyed()


def test_a_charger_in_another_generation_is_not_the_committed_state() -> None:
    committed = PinState(True, 3)
    elsewhere = published(PinState(True, 3, None, 1))
    assert not shows(SECRET, SERIAL, committed, elsewhere)
    assert reconcile(SECRET, SERIAL, elsewhere, committed, None).live == "unknown"


def test_a_rekey_whose_receipt_was_lost_is_committed_from_the_open_info() -> None:
    committed = PinState(True, 3)
    pending = apply(Action.REKEY, {}, committed)
    outcome = reconcile(SECRET, SERIAL, published(pending.rotated()), committed, pending)
    assert (outcome.live, outcome.committed) == ("pending", PinState(True, 4, None, 1))
    receipt = published(pending, signed=True)
    assert commit_receipt(committed, pending, receipt) == pending
