"""From measured attempts to days and years: the attacker's best schedule under each lockout.

A trial on the virtual radio can run a few hundred attempts; recovering a PIN that each attempt
finds with probability 1/998,900 takes about a million. So the long horizons are derived, from
two things the trials measure (the wall time of one attempt, and that every failed attempt is
counted by the lockout exactly as `core.lockout` says; `model_check` compares the two) and
from the charger's own lockout machine run at full speed, attempt by attempt, with the attacker
attempting again the moment it is allowed to.

* Hardened, any strategy: every failed attempt moves the charger to a fresh, independent PIN,
  so each attempt succeeds with p = 1/998,900 whatever was learnt before:
  P(recovered within T) = 1 - (1 - p)^N(T), N(T) the attempts the lockout lets in by T.
* Classic, plain guessing: the PIN is fixed and a careful attacker never repeats a guess:
  P = min(1, N(T) / 998,900).
* Classic, passkey bits: measured directly (the trials recover the PIN within minutes); the
  probability at T is the share of trials that had recovered by T.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from chargepin.core import lockout
from chargepin.core.lockout import LockoutConfig, LockoutState

STRONG_PINS = 998_900
"""PINs a charger can have: 000000-999999 less the 1,100 weak ones (core.pin.weakness)."""

DAY = 86_400.0
HORIZONS = {"1 day": DAY, "30 days": 30 * DAY, "1 year": 365 * DAY}


@dataclass(frozen=True)
class Schedule:
    """When the attacker's attempts are served, attempting again as soon as it may."""

    config: LockoutConfig
    attempt_seconds: float
    times: tuple[float, ...]  # start of each served attempt, seconds from the first
    horizon: float

    def attempts_by(self, seconds: float) -> int:
        """Attempts served by `seconds` of attacker time (N(T))."""
        if seconds <= self.horizon:
            return bisect.bisect_right(self.times, seconds)
        return len(self.times) + math.floor((seconds - self.horizon) * self.steady_rate())

    def seconds_for(self, attempts: int) -> float:
        """Attacker time until `attempts` have been served (the last one included)."""
        if attempts <= len(self.times):
            return self.times[attempts - 1] + self.attempt_seconds
        # Past the horizon: the steady rate of the last 30 days (the lockout pattern repeats).
        return self.horizon + (attempts - len(self.times)) / self.steady_rate()

    def steady_rate(self) -> float:
        """Attempts per second over the last 30 days of the schedule."""
        since = self.horizon - 30 * DAY
        recent = len(self.times) - bisect.bisect_left(self.times, since)
        return recent / (self.horizon - since)


def schedule(
    config: LockoutConfig, attempt_seconds: float, horizon: float | None = None
) -> Schedule:
    """Run the lockout machine for `horizon` seconds of an attacker failing as fast as it may.

    By default 400 days with growing lockouts (cheap: a few thousand attempts); without growth
    the pattern repeats from the first lock on, so 31 days are run and the rest extrapolated
    from the last 30 days' rate (a year of the classic profile is half a million attempts).
    """
    if horizon is None:
        horizon = 400 * DAY if config.growth else 31 * DAY
    times: list[float] = []
    state = LockoutState()
    now = 0.0
    while now < horizon:
        decision = lockout.check(config, state, now)
        if not decision.allowed:
            now += decision.retry_after
            continue
        times.append(now)
        now += attempt_seconds
        state = lockout.record_failure(config, state, now)
    return Schedule(config, attempt_seconds, tuple(times), horizon)


def p_independent(attempts: int, space: int = STRONG_PINS) -> float:
    """Recovery within `attempts` when each faces a fresh uniform PIN (hardened)."""
    return -math.expm1(attempts * math.log1p(-1.0 / space))


def p_without_repeats(attempts: int, space: int = STRONG_PINS) -> float:
    """Recovery within `attempts` distinct guesses of one fixed uniform PIN (classic)."""
    return min(1.0, attempts / space)


def attempts_for_probability(probability: float, space: int = STRONG_PINS) -> float:
    """Attempts for recovery with `probability` when each faces a fresh PIN (hardened)."""
    return math.log1p(-probability) / math.log1p(-1.0 / space)


def empirical_probability(recovery_seconds: list[float], trials: int, seconds: float) -> float:
    """Share of `trials` that had recovered the PIN by `seconds` (unrecovered ones never)."""
    return sum(1 for value in recovery_seconds if value <= seconds) / trials
