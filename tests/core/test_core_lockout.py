"""The lockout state machine (chargepin.core.lockout): numbers, profiles and its guarantees."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepin.core.errors import InvalidConfig
from chargepin.core.lockout import (
    Decision,
    LockoutConfig,
    LockoutScope,
    LockoutState,
    check,
    check_connection,
    is_locked,
    record_failure,
    retry_after,
)
from chargepin.core.profiles import PROFILES, lockout_config

HARDENED = lockout_config("hardened")
CLASSIC = lockout_config("classic")


def fail_at(config: LockoutConfig, state: LockoutState, *times: float) -> LockoutState:
    """Feed failures at `times`; each must be served (the test is wrong otherwise)."""
    for t in times:
        assert check(config, state, t).allowed, f"attempt at {t} was refused"
        state = record_failure(config, state, t)
    return state


def lock_durations(config: LockoutConfig, count: int, gap: float = 0.0) -> list[float]:
    """Durations of `count` successive lockouts, each run of failures starting `gap` s after
    the previous lock ends."""
    state, t, durations = LockoutState(), 0.0, []
    for _ in range(count):
        state = fail_at(config, state, *(t + i for i in range(config.failures)))
        assert state.locked_from is not None and state.locked_until is not None
        durations.append(state.locked_until - state.locked_from)
        t = state.locked_until + gap
    return durations


def round_trip(state: LockoutState) -> LockoutState:
    return LockoutState.from_dict(json.loads(json.dumps(state.to_dict())))


# ---- unit tests: the published numbers -------------------------------------------------------


@pytest.mark.parametrize("config", [HARDENED, CLASSIC], ids=["hardened", "classic"])
def test_five_failures_in_a_minute_lock_for_five_minutes(config: LockoutConfig) -> None:
    state = fail_at(config, LockoutState(), 0, 10, 20, 30, 40)
    assert state.locked_from == 40
    assert state.locked_until == 340
    assert state.failures == ()
    assert check(config, state, 40) == Decision(allowed=False, retry_after=300)
    assert check(config, state, 339.5) == Decision(allowed=False, retry_after=0.5)
    assert check(config, state, 340) == Decision(allowed=True, retry_after=0.0)
    assert is_locked(config, state, 100)
    assert not is_locked(config, state, 340)
    assert retry_after(config, state, 340) == 0.0


def test_four_failures_then_a_61_s_pause_do_not_lock() -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 1, 2, 3, 64)
    assert state.locked_until is None
    assert state.failures == (64,)


@pytest.mark.parametrize(("fifth", "locked"), [(59.999, True), (60.0, False)])
def test_window_boundary(fifth: float, locked: bool) -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 15, 30, 45, fifth)
    assert is_locked(HARDENED, state, fifth) is locked


def test_hardened_doubles_up_to_the_cap() -> None:
    config = lockout_config("hardened", growth_window=10**7)
    assert lock_durations(config, 12) == [
        300,
        600,
        1200,
        2400,
        4800,
        9600,
        19200,
        38400,
        76800,
        86400,
        86400,
        86400,
    ]


def test_hardened_growth_counts_only_lockouts_within_24_h() -> None:
    # Lockout starts at 0, 304, 908, ...: after 24 h the first ones stop counting.
    durations = lock_durations(HARDENED, 10)
    assert durations[:9] == [300 * 2**k for k in range(9)]
    assert durations[9] < durations[8]
    # A lockout a day after the previous one starts again at 300 s.
    assert lock_durations(HARDENED, 3, gap=86400) == [300, 300, 300]


def test_classic_never_grows_and_locks_everything() -> None:
    assert lock_durations(CLASSIC, 5) == [300] * 5
    assert CLASSIC.scope is LockoutScope.ALL
    assert HARDENED.scope is LockoutScope.PAIRING


def test_failures_while_locked_are_ignored() -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 1, 2, 3, 4)
    for t in (5, 100, 303.9):
        assert record_failure(HARDENED, state, t) == state


@pytest.mark.parametrize(
    ("config", "bonded", "allowed"),
    [
        (HARDENED, True, True),
        (HARDENED, False, False),
        (CLASSIC, True, False),
        (CLASSIC, False, False),
    ],
)
def test_scope_decides_whether_bonded_phones_connect(
    config: LockoutConfig, bonded: bool, allowed: bool
) -> None:
    state = fail_at(config, LockoutState(), 0, 1, 2, 3, 4)
    assert check_connection(config, state, 10, bonded=bonded).allowed is allowed
    assert check_connection(config, state, 1000, bonded=bonded).allowed


def test_a_clock_that_went_backwards_never_shortens_a_lock() -> None:
    state = fail_at(HARDENED, LockoutState(), 1000, 1001, 1002, 1003, 1004)
    assert check(HARDENED, state, 0) == Decision(allowed=False, retry_after=1304)
    assert record_failure(HARDENED, state, 0) == state


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_a_clock_that_is_not_a_number_is_refused(now: float) -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 1, 2, 3, 4)
    with pytest.raises(InvalidConfig, match="now"):
        check(HARDENED, state, now)
    with pytest.raises(InvalidConfig):
        record_failure(HARDENED, state, now)


def test_prune_forgets_old_history_but_keeps_the_lock() -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 1, 2, 3, 4)
    state = fail_at(HARDENED, state, 400, 401)
    pruned = state.prune(HARDENED, 100_000)
    assert pruned == LockoutState(locked_from=4, locked_until=304)
    assert state.prune(HARDENED, 402) == state


# ---- configuration ---------------------------------------------------------------------------


def test_profiles() -> None:
    assert set(PROFILES) == {"classic", "hardened"}
    assert PROFILES["classic"].lockout == CLASSIC
    assert PROFILES["hardened"].lockout == HARDENED == LockoutConfig()
    assert (CLASSIC.failures, CLASSIC.window, CLASSIC.duration, CLASSIC.growth) == (5, 60, 300, 0)
    assert (HARDENED.cap, HARDENED.growth_window, HARDENED.growth) == (86400, 86400, True)
    with pytest.raises(InvalidConfig, match="classic, hardened"):
        lockout_config("paranoid")


def test_profile_overrides() -> None:
    config = lockout_config("classic", failures=3, scope="pairing")
    assert config.failures == 3
    assert config.scope is LockoutScope.PAIRING
    assert config.growth is False
    with pytest.raises(InvalidConfig, match="unknown lockout settings"):
        lockout_config("hardened", attempts=3)


@pytest.mark.parametrize(
    ("overrides", "message_part"),
    [
        ({"failures": 0}, "at least 1"),
        ({"failures": True}, "whole number"),
        ({"failures": 2.5}, "whole number"),
        ({"window": 0}, "more than 0"),
        ({"window": -5, "duration": 300}, "more than 0"),
        ({"window": math.nan}, "finite"),
        ({"duration": math.inf}, "finite"),
        ({"window": "60"}, "number"),
        ({"duration": 30}, "more than 5 attempts into one window"),
        ({"cap": 100}, "at least the duration"),
        ({"growth_window": 0}, "growth_window"),
        ({"scope": "everything"}, "pairing, all"),
        ({"growth": "yes"}, "true or false"),
    ],
)
def test_config_validation(overrides: dict[str, Any], message_part: str) -> None:
    with pytest.raises(InvalidConfig, match=message_part):
        LockoutConfig(**overrides)


@pytest.mark.parametrize("config", [HARDENED, CLASSIC, LockoutConfig(failures=3, window=10.5)])
def test_config_round_trip(config: LockoutConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert LockoutConfig.from_dict(data) == config


@pytest.mark.parametrize(
    "data",
    [[], "hardened", {"failures": 0}, {"attempts": 5}, {"scope": 3}, {"window": None}],
)
def test_config_from_garbage(data: Any) -> None:
    with pytest.raises(InvalidConfig):
        LockoutConfig.from_dict(data)


# ---- state serialisation ---------------------------------------------------------------------


def test_state_round_trip() -> None:
    state = fail_at(HARDENED, LockoutState(), 0, 1, 2, 3, 4)
    state = fail_at(HARDENED, state, 400.25, 401.5)
    assert round_trip(state) == state
    assert round_trip(LockoutState()) == LockoutState()
    assert LockoutState.from_dict({}) == LockoutState()


@pytest.mark.parametrize(
    "data",
    [
        None,
        [1, 2],
        {"failures": "1,2"},
        {"failures": ["1"]},
        {"failures": [True]},
        {"failures": [math.nan]},
        {"recent_lockouts": [math.inf]},
        {"locked_from": 1.0},
        {"locked_until": 1.0},
        {"locked_from": 10, "locked_until": 5},
        {"locked_from": "10", "locked_until": "20"},
        {"failures": [], "extra": 1},
    ],
)
def test_state_from_garbage(data: Any) -> None:
    with pytest.raises(InvalidConfig):
        LockoutState.from_dict(data)


# ---- properties ------------------------------------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> LockoutConfig:
    window = draw(st.integers(min_value=1, max_value=120))
    duration = window + draw(st.integers(min_value=0, max_value=300))
    return LockoutConfig(
        failures=draw(st.integers(min_value=1, max_value=6)),
        window=window,
        duration=duration,
        cap=duration + draw(st.integers(min_value=0, max_value=3000)),
        growth=draw(st.booleans()),
        growth_window=draw(st.integers(min_value=1, max_value=5000)),
        scope=draw(st.sampled_from(LockoutScope)),
    )


# Mostly bursts (an attacker retries at once), sometimes pauses long enough to outlast a lock.
gaps = st.integers(min_value=0, max_value=10) | st.integers(min_value=0, max_value=400)
events = st.lists(st.tuples(gaps, st.booleans()), max_size=80)


@settings(max_examples=300, deadline=None)
@given(configs(), events)
def test_served_failures_never_exceed_the_limit_and_locks_never_end_early(
    config: LockoutConfig, attempts: list[tuple[int, bool]]
) -> None:
    """An attacker gets at most `failures` served attempts per window; no lock ends early."""
    state, now = LockoutState(), 0
    served: list[int] = []
    locks: list[tuple[float, float]] = []
    for gap, persist in attempts:
        now += gap
        if persist:  # the daemon writes the state to disk and reads it back after a reboot
            state = round_trip(state)
        decision = check(config, state, now)
        assert decision.allowed == (decision.retry_after == 0)
        assert decision.retry_after >= 0
        if decision.allowed:
            served.append(now)
            state = record_failure(config, state, now)
            if is_locked(config, state, now):
                assert state.locked_from == now and state.locked_until is not None
                assert state.locked_until - now <= config.cap
                locks.append((now, state.locked_until))
        else:
            assert record_failure(config, state, now) == state
        for start, until in locks:
            for t in (start, (start + until) / 2, math.nextafter(until, -math.inf), start - 1e6):
                assert not check(config, state, t).allowed
                assert retry_after(config, round_trip(state), t) >= until - t
    for t in served:
        in_window = [u for u in served if t - config.window < u <= t]
        assert len(in_window) <= config.failures


@given(configs(), st.integers(min_value=0, max_value=10**9))
def test_record_failure_output_always_round_trips(config: LockoutConfig, start: int) -> None:
    state = LockoutState()
    for i in range(config.failures + 1):
        state = record_failure(config, state, start + i)
        assert round_trip(state) == state


@pytest.mark.parametrize(
    ("config", "expected_served"),
    [(CLASSIC, 2700), (HARDENED, 75)],
    ids=["classic", "hardened"],
)
def test_an_attacker_retrying_every_5_s_for_two_days(
    config: LockoutConfig, expected_served: int
) -> None:
    """The limits hold against a patient attacker; growth cuts their guesses 36-fold."""
    state, served = LockoutState(), []
    for now in range(0, 2 * 86400, 5):
        if check(config, state, now).allowed:
            served.append(now)
            state = record_failure(config, state, now)
    assert len(served) == expected_served
    for t in served:
        assert sum(1 for u in served if t - config.window < u <= t) <= config.failures
