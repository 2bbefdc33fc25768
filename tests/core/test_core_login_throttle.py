"""The fleet's login throttle (chargepin.core.login_throttle): how the two locks combine."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepin.core.errors import InvalidConfig
from chargepin.core.login_throttle import (
    ACCOUNT_LOCKOUT,
    SOURCE_LOCKOUT,
    Throttle,
    decide,
    record_probe,
    record_wrong_password,
)

T0 = 1_800_000_000.0


def _fail(
    account: Throttle, source: Throttle, times: int, now: float = T0
) -> tuple[Throttle, Throttle]:
    for _ in range(times):
        account, source = record_wrong_password(account, source, now)
    return account, source


def test_a_locked_account_still_serves_a_source_that_has_not_failed_since() -> None:
    account, attacker = _fail(Throttle(), Throttle(), ACCOUNT_LOCKOUT.failures)
    assert not decide(account, attacker, T0 + 1).allowed
    assert decide(account, Throttle(), T0 + 1).allowed  # never failed
    earlier = Throttle(last_failure=T0 - 10)  # failed before the lock began
    assert decide(account, earlier, T0 + 1).allowed
    _, after = record_wrong_password(account, Throttle(), T0 + 1)
    assert not decide(account, after, T0 + 2).allowed  # one guess, then it waits too


def test_a_locked_source_is_refused_whatever_the_account() -> None:
    source = Throttle()
    for _ in range(SOURCE_LOCKOUT.failures):
        source = record_probe(source, T0)
    refused = decide(Throttle(), source, T0 + 1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(SOURCE_LOCKOUT.duration - 1)


def test_the_account_lock_is_the_core_lockout_and_ends() -> None:
    account, source = _fail(Throttle(), Throttle(), ACCOUNT_LOCKOUT.failures)
    assert decide(account, source, T0).retry_after == ACCOUNT_LOCKOUT.duration
    assert decide(account, source, T0 + ACCOUNT_LOCKOUT.duration).allowed


def test_records_round_trip_through_json_and_damage_is_refused() -> None:
    account, source = _fail(Throttle(), Throttle(), 7)
    for record in (account, source, Throttle()):
        assert Throttle.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert Throttle.from_dict({}) == Throttle.from_dict(None) == Throttle()
    with pytest.raises(InvalidConfig):
        Throttle.from_dict({"lockout": {}, "extra": 1})
    with pytest.raises(InvalidConfig):
        Throttle.from_dict({"last_failure": "yesterday"})


@settings(max_examples=200)
@given(st.lists(st.floats(min_value=0.0, max_value=3 * 86400.0), min_size=1, max_size=80))
def test_one_source_never_gets_more_than_the_account_limit_into_a_window(
    offsets: list[float],
) -> None:
    """The core guarantee carried over: attempts served only when `decide` allows them, from
    one source on one account, never put more than `failures` wrong passwords in a window."""
    account, source = Throttle(), Throttle()
    served: list[float] = []
    for now in sorted(T0 + offset for offset in offsets):
        if decide(account, source, now).allowed:
            served.append(now)
            account, source = record_wrong_password(account, source, now)
    for start in served:
        inside = [t for t in served if start <= t < start + ACCOUNT_LOCKOUT.window]
        assert len(inside) <= ACCOUNT_LOCKOUT.failures
