"""The pairing attempt's lifecycle (chargepin.core.pairing_attempt): every attempt that did not
end in a bond is counted exactly once, before the refusal or failure goes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepin.core.attempts import AttemptKind, Refusal
from chargepin.core.pairing_attempt import (
    TRANSITIONS,
    Admitted,
    Attempt,
    AttemptEvent,
    Count,
    Disconnected,
    Drop,
    DropReason,
    Failed,
    LogRefusal,
    LogSuccess,
    Paired,
    Phase,
    Refuse,
    Release,
    Requested,
    Serve,
    TimedOut,
    step,
)

events = st.one_of(
    st.builds(Requested, st.sampled_from([None, *Refusal])),
    st.builds(Failed, st.sampled_from(AttemptKind)),
    st.just(TimedOut()),
    st.just(Paired()),
    st.just(Disconnected()),
    st.just(Admitted()),
)


def run(*sequence: AttemptEvent) -> tuple[Attempt, list[object]]:
    attempt, actions = Attempt(), []
    for event in sequence:
        attempt, done = step(attempt, event)
        actions.extend(done)
    return attempt, actions


def test_a_wrong_pin_is_counted_released_and_dropped() -> None:
    attempt, actions = run(Requested(None), Failed(AttemptKind.WRONG_PIN))
    assert attempt.phase is Phase.COUNTED
    assert actions == [Serve(), Count(AttemptKind.WRONG_PIN), Release(), Drop(DropReason.FAILED)]


def test_our_failure_hook_then_bumbles_event_count_once() -> None:
    """Bumble reports the failure we sent after our hook already counted it."""
    _, actions = run(Requested(None), Failed(AttemptKind.WRONG_PIN), Failed(AttemptKind.FAILED))
    assert [a for a in actions if isinstance(a, Count)] == [Count(AttemptKind.WRONG_PIN)]


def test_a_busy_refusal_is_counted_before_it_is_sent() -> None:
    attempt, actions = run(Requested(Refusal.BUSY), Failed(AttemptKind.FAILED))
    assert attempt.phase is Phase.REFUSED
    assert actions == [Count(AttemptKind.BUSY), Refuse(Refusal.BUSY)]


@pytest.mark.parametrize("refusal", [Refusal.LOCKED, Refusal.NEEDS_PASSKEY])
def test_refusals_that_guessed_nothing_are_logged_not_counted(refusal: Refusal) -> None:
    _, actions = run(Requested(refusal), Failed(AttemptKind.FAILED), Disconnected())
    assert actions == [LogRefusal(refusal), Refuse(refusal)]


def test_hanging_up_mid_pairing_is_an_aborted_attempt() -> None:
    attempt, actions = run(Requested(None), Disconnected(), TimedOut(), Failed(AttemptKind.FAILED))
    assert attempt.phase is Phase.GONE
    assert actions == [Serve(), Count(AttemptKind.ABORTED), Release()]


def test_the_smp_timer_aborts_and_drops() -> None:
    _, actions = run(Requested(None), TimedOut(), Disconnected())
    assert actions == [
        Serve(),
        Count(AttemptKind.ABORTED),
        Release(),
        Drop(DropReason.TIMED_OUT),
    ]


def test_a_bond_is_logged_and_nothing_is_counted_after_it() -> None:
    attempt, actions = run(Requested(None), Paired(), Failed(AttemptKind.FAILED), Disconnected())
    assert attempt.phase is Phase.GONE
    assert actions == [Serve(), Release(), LogSuccess(True)]


def test_a_second_request_on_a_pairing_link_ends_the_running_attempt() -> None:
    _, actions = run(Requested(None), Requested(None), Failed(AttemptKind.FAILED))
    assert actions == [Serve(), Count(AttemptKind.ABORTED), Release(), Refuse(Refusal.BUSY)]


def test_admission_stays_with_the_link() -> None:
    attempt, _ = run(Admitted(), Requested(None), Failed(AttemptKind.WRONG_PIN))
    assert attempt.admitted and attempt.phase is Phase.COUNTED


def test_the_table_names_every_phase() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.GONE] == {}


@settings(max_examples=500)
@given(st.lists(events, max_size=25))
def test_every_attempt_is_counted_exactly_once_and_before_it_is_answered(
    sequence: list[AttemptEvent],
) -> None:
    """An oracle that follows attempts by hand: a served request opens one, which ends counted
    (failure, timeout, hang-up, a second request) or bonded; a busy refusal is one attempt,
    counted; a failure reported with no attempt open is counted as one (never lost)."""
    attempt = Attempt()
    open_attempt = False
    slot = False
    for event in sequence:
        before = attempt
        attempt, actions = step(attempt, event)
        counts = [a for a in actions if isinstance(a, Count)]
        expected = 0
        if before.phase is Phase.GONE:
            expected = 0
        elif open_attempt and isinstance(event, Failed | TimedOut | Disconnected | Requested):
            expected, open_attempt = 1, False
        elif open_attempt and isinstance(event, Paired):
            open_attempt = False
        elif isinstance(event, Requested) and event.refusal is None:
            open_attempt = True
        elif (isinstance(event, Requested) and event.refusal is Refusal.BUSY) or (
            isinstance(event, Failed) and before.phase is Phase.IDLE
        ):
            expected = 1
        assert len(counts) == expected, (before, event, actions)
        # Counted before the answer leaves: no Refuse or Drop precedes the Count.
        if counts:
            first = actions.index(counts[0])
            assert not any(isinstance(a, Refuse | Drop) for a in actions[:first])
        # The one pairing slot is held exactly while an attempt runs.
        for action in actions:
            if isinstance(action, Serve):
                assert not slot
                slot = True
            if isinstance(action, Release):
                assert slot
                slot = False
        assert slot == attempt.pairing == open_attempt
        if isinstance(event, Admitted) and before.phase is not Phase.GONE:
            assert attempt.admitted
