"""Brute-force lockout: a sans-IO state machine fed with failed attempts and the current time.

PRODUCT.md: 5 failed attempts within one minute make the charger unavailable for 5 minutes.
The state is a value; the daemon persists it before it serves the next attempt (DESIGN.md,
"Lockout"), so a reboot never resets it. Time is always an argument (unix seconds).

The guarantee, checked by property tests: an attacker whose attempts are served only when
`check` allows them never gets more than `config.failures` failed attempts into any interval of
`config.window` seconds, and a lock never ends before its `locked_until`, even if the clock goes
backwards. Two decisions follow from it:

* A success does not clear the failures (a strict sliding window). If it did, anyone able to
  pair successfully now and then (an invited user, an accomplice who knows the PIN of the
  current epoch) could reset the count between guesses and get more than `failures` guesses
  into one window. The owner loses nothing: failures age out after `window` seconds anyway.
* Failures reported while locked are ignored: such attempts were never served (the pairing is
  refused with SMP "Repeated Attempts", Core spec Vol 3 Part H 3.5.5), so they teach an
  attacker nothing, and counting them would let a stranger in range extend the lock forever.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from chargepin.core.errors import InvalidConfig
from chargepin.core.limits import require_now

_MAX_DOUBLINGS = 64
"""Doublings beyond this are all capped anyway; bounds the stored lockout history too."""


class LockoutScope(StrEnum):
    """What a lock refuses."""

    PAIRING = "pairing"
    """Only new pairings are refused; bonded phones still connect (the owner keeps access)."""
    ALL = "all"
    """Nothing connects while locked (the vendor's original behaviour)."""


def _number(name: str, value: object) -> float:
    """`value` as a finite number, or InvalidConfig naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidConfig(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise InvalidConfig(f"{name} must be a finite number of seconds, got {value!r}")
    return value


def _with(base: LockoutConfig, overrides: Mapping[str, Any]) -> LockoutConfig:
    """`base` with some fields replaced, refusing unknown names with InvalidConfig."""
    known = {field.name for field in dataclasses.fields(LockoutConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise InvalidConfig(
            f"unknown lockout settings {sorted(map(str, unknown))}; "
            f"the settings are {', '.join(sorted(known))}"
        )
    return dataclasses.replace(base, **overrides)


def _choices(enum: type[Enum]) -> str:
    """The values of an enum, for error messages."""
    return ", ".join(str(member.value) for member in enum)


@dataclass(frozen=True)
class LockoutConfig:
    """The lockout numbers: `failures` failed attempts within `window` seconds lock for `duration`.

    With `growth`, each lockout that starts within `growth_window` seconds of earlier ones
    lasts twice as long as the one before, capped at `cap`. The defaults are DESIGN.md's (the
    hardened profile, core/profiles.py).
    """

    failures: int = 5
    window: float = 60.0
    duration: float = 300.0
    scope: LockoutScope = LockoutScope.PAIRING
    growth: bool = True
    cap: float = 86400.0
    growth_window: float = 86400.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int):
            raise InvalidConfig(
                f"lockout failures must be a whole number, got {self.failures!r}; e.g. 5"
            )
        if self.failures < 1:
            raise InvalidConfig(
                f"lockout failures must be at least 1, got {self.failures}; "
                "it is the number of wrong PINs that locks the charger"
            )
        window = _number("lockout window", self.window)
        duration = _number("lockout duration", self.duration)
        cap = _number("lockout cap", self.cap)
        growth_window = _number("lockout growth_window", self.growth_window)
        if window <= 0:
            raise InvalidConfig(f"lockout window must be more than 0 s, got {window}; e.g. 60")
        if duration < window:
            raise InvalidConfig(
                f"lockout duration ({duration} s) must be at least the window ({window} s): "
                f"a shorter lock would let more than {self.failures} attempts into one window; "
                "raise the duration or shorten the window"
            )
        if cap < duration:
            raise InvalidConfig(
                f"lockout cap ({cap} s) must be at least the duration ({duration} s); "
                "raise the cap or lower the duration"
            )
        if growth_window <= 0:
            raise InvalidConfig(
                f"lockout growth_window must be more than 0 s, got {growth_window}; e.g. 86400"
            )
        if not isinstance(self.growth, bool):
            raise InvalidConfig(f"lockout growth must be true or false, got {self.growth!r}")
        try:
            object.__setattr__(self, "scope", LockoutScope(self.scope))
        except ValueError:
            raise InvalidConfig(
                f"lockout scope must be one of {_choices(LockoutScope)}, got {self.scope!r}"
            ) from None

    def replace(self, **overrides: Any) -> LockoutConfig:
        """This config with some fields replaced, refusing unknown names with InvalidConfig."""
        return _with(self, overrides) if overrides else self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; `from_dict` reads it back."""
        return {
            "failures": self.failures,
            "window": self.window,
            "duration": self.duration,
            "scope": self.scope.value,
            "growth": self.growth,
            "cap": self.cap,
            "growth_window": self.growth_window,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockoutConfig:
        """Read `to_dict` output; missing keys take the defaults, unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise InvalidConfig(f"lockout config must be a mapping, got {type(data).__name__}")
        return _with(cls(), data)


@dataclass(frozen=True)
class LockoutState:
    """What the lockout remembers: recent failures, the last lock and when lockouts started."""

    failures: tuple[float, ...] = ()
    locked_from: float | None = None
    locked_until: float | None = None
    recent_lockouts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("failures", "recent_lockouts"):
            times = getattr(self, name)
            if not isinstance(times, tuple):
                raise InvalidConfig(
                    f"lockout state {name} must be a tuple of times, got {type(times).__name__}"
                )
            for value in times:
                _number(f"lockout state {name} entry", value)
        if (self.locked_from is None) != (self.locked_until is None):
            raise InvalidConfig(
                "lockout state must have both locked_from and locked_until or neither, got "
                f"{self.locked_from!r} and {self.locked_until!r}; the stored state is damaged"
            )
        if self.locked_from is not None and self.locked_until is not None:
            start = _number("lockout state locked_from", self.locked_from)
            end = _number("lockout state locked_until", self.locked_until)
            if end < start:
                raise InvalidConfig(
                    f"lockout state ends ({end}) before it starts ({start}); "
                    "the stored state is damaged"
                )

    def prune(self, config: LockoutConfig, now: float) -> LockoutState:
        """Forget failures and lockouts too old to matter; the current lock is always kept."""
        require_now(now)
        return dataclasses.replace(
            self,
            failures=tuple(t for t in self.failures if t > now - config.window),
            recent_lockouts=tuple(
                t for t in self.recent_lockouts if t > now - config.growth_window
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; `from_dict` reads it back."""
        return {
            "failures": list(self.failures),
            "locked_from": self.locked_from,
            "locked_until": self.locked_until,
            "recent_lockouts": list(self.recent_lockouts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockoutState:
        """Read `to_dict` output, refusing anything malformed with InvalidConfig."""
        if not isinstance(data, Mapping):
            raise InvalidConfig(f"lockout state must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise InvalidConfig(
                f"lockout state has unknown keys {sorted(map(str, unknown))}; "
                "it was written by another version or is damaged"
            )
        lists = {}
        for name in ("failures", "recent_lockouts"):
            value = data.get(name, [])
            if not isinstance(value, list | tuple):
                raise InvalidConfig(
                    f"lockout state {name} must be a list of times, got {type(value).__name__}"
                )
            lists[name] = tuple(value)
        return cls(
            failures=lists["failures"],
            locked_from=data.get("locked_from"),
            locked_until=data.get("locked_until"),
            recent_lockouts=lists["recent_lockouts"],
        )


@dataclass(frozen=True)
class Decision:
    """Whether an attempt may be served now; if not, how many seconds until it may."""

    allowed: bool
    retry_after: float


def retry_after(config: LockoutConfig, state: LockoutState, now: float) -> float:
    """Seconds until attempts are served again; 0.0 when they are served now."""
    require_now(now)
    if state.locked_until is not None and now < state.locked_until:
        return state.locked_until - now
    return 0.0


def is_locked(config: LockoutConfig, state: LockoutState, now: float) -> bool:
    """Whether a lock is in force at `now` (a clock that went backwards never shortens it)."""
    require_now(now)
    return state.locked_until is not None and now < state.locked_until


def check(config: LockoutConfig, state: LockoutState, now: float) -> Decision:
    """Whether a PIN attempt (a new pairing) may be served at `now`."""
    if is_locked(config, state, now):
        return Decision(allowed=False, retry_after=retry_after(config, state, now))
    return Decision(allowed=True, retry_after=0.0)


def check_connection(
    config: LockoutConfig, state: LockoutState, now: float, *, bonded: bool
) -> Decision:
    """Whether a connection may proceed: bonded phones pass a PAIRING-scope lock, never ALL."""
    if bonded and config.scope is LockoutScope.PAIRING:
        require_now(now)
        return Decision(allowed=True, retry_after=0.0)
    return check(config, state, now)


def quiet_from(config: LockoutConfig, state: LockoutState) -> float | None:
    """The moment from which `state` decides exactly what a fresh state would, for ever; None
    if it already does. Its failures have left the window, its lock has ended and its lockouts
    no longer double the next one: a store may forget it then (the fleet prunes such rows).
    """
    horizons = [t + config.window for t in state.failures[-1:]]
    horizons += [t + config.growth_window for t in state.recent_lockouts[-1:]]
    if state.locked_until is not None:
        horizons.append(state.locked_until)
    return max(horizons, default=None)


def record_failure(config: LockoutConfig, state: LockoutState, now: float) -> LockoutState:
    """The state after a failed (or aborted) PIN attempt at `now`.

    Reaching `config.failures` failures within the window locks for `config.duration`, doubled
    for each lockout that started within `growth_window` before (with `growth`), capped at
    `config.cap`; the failures are then cleared so the next lock needs a fresh run of them.
    """
    if is_locked(config, state, now):
        return state
    failures = (*(t for t in state.failures if t > now - config.window), now)
    if len(failures) < config.failures:
        return dataclasses.replace(state, failures=failures)
    recent = tuple(t for t in state.recent_lockouts if t > now - config.growth_window)
    doublings = min(len(recent), _MAX_DOUBLINGS) if config.growth else 0
    duration = min(config.cap, config.duration * 2.0**doublings)
    return LockoutState(
        failures=(),
        locked_from=now,
        locked_until=now + duration,
        recent_lockouts=(*recent, now)[-_MAX_DOUBLINGS:],
    )
