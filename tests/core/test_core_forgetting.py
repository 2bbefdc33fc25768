"""When a lockout record may be forgotten (core.lockout.quiet_from and the fleet's uses of it).

The fleet deletes login-throttle and claim-source rows once they are quiet (issue 9, point 7);
that is safe only if a quiet record decides everything exactly as no record would.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chargepin.core import claims, login_throttle
from chargepin.core.lockout import LockoutConfig, LockoutState, check, quiet_from, record_failure
from chargepin.core.login_throttle import Throttle, decide

CONFIG = LockoutConfig(failures=3, window=10.0, duration=20.0, cap=80.0, growth_window=100.0)
gaps = st.lists(st.floats(min_value=0.0, max_value=40.0), min_size=0, max_size=30)


def _run(state: LockoutState, start: float, steps: list[float]) -> list[tuple[bool, float]]:
    """Fail at each moment (gaps after `start`); what `check` says just before each failure."""
    now, seen = start, []
    for gap in steps:
        now += gap
        decision = check(CONFIG, state, now)
        seen.append((decision.allowed, decision.retry_after))
        state = record_failure(CONFIG, state, now)
    return seen


def test_a_fresh_state_is_quiet_already() -> None:
    assert quiet_from(CONFIG, LockoutState()) is None


@given(history=gaps, later=gaps, wait=st.floats(min_value=0.0, max_value=50.0))
def test_a_quiet_state_decides_as_no_state_would(
    history: list[float], later: list[float], wait: float
) -> None:
    state, now = LockoutState(), 1_000.0
    for gap in history:
        now += gap
        state = record_failure(CONFIG, state, now)
    quiet = quiet_from(CONFIG, state)
    start = max(now, quiet if quiet is not None else now) + wait
    assert _run(state, start, later) == _run(LockoutState(), start, later)


@given(history=gaps)
def test_a_state_is_not_quiet_while_it_still_decides_something(history: list[float]) -> None:
    """Just before its quiet moment a state with a failure still differs from a fresh one in
    what it would decide next: forgetting it any sooner would change an answer."""
    state, now = LockoutState(), 1_000.0
    for gap in history:
        now += gap
        state = record_failure(CONFIG, state, now)
    quiet = quiet_from(CONFIG, state)
    if quiet is None:
        assert state.failures == () and state.locked_until is None
        return
    just_before = quiet - 1e-6
    burst = [0.0] * CONFIG.failures + [0.0]
    assert _run(state, just_before, burst) != _run(LockoutState(), just_before, burst)


def test_a_source_that_failed_during_an_account_lock_is_kept_for_the_longest_lock() -> None:
    """`decide` refuses a source that failed since the account's lock began; a source record
    forgotten after its own window would get a fresh guess per window instead."""
    now = 5_000.0
    account = Throttle()
    for n in range(login_throttle.ACCOUNT_LOCKOUT.failures):
        account, _ = login_throttle.record_wrong_password(account, Throttle(), now + n)
    source = login_throttle.record_probe(Throttle(), now + 10)
    assert not decide(account, source, now + 100).allowed
    assert decide(account, Throttle(), now + 100).allowed  # a forgotten source would pass
    kept_until = login_throttle.source_forgotten_at(source)
    assert kept_until is not None
    assert kept_until >= now + 10 + login_throttle.ACCOUNT_LOCKOUT.cap
    forgotten_at = login_throttle.account_forgotten_at(account)
    assert forgotten_at == account.lockout.recent_lockouts[-1] + 86_400.0
    assert login_throttle.source_forgotten_at(Throttle()) is None


def test_a_claim_source_is_forgotten_when_its_lockout_is_quiet() -> None:
    state = record_failure(claims.SOURCE_LOCKOUT, LockoutState(), 100.0)
    assert claims.source_forgotten_at(state) == 100.0 + claims.SOURCE_LOCKOUT.window
