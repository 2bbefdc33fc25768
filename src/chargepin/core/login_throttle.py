"""The fleet's login throttle: wrong passwords counted per account and per source address.

Both counts are the core lockout machine (core/lockout.py); this module says which numbers
apply and how the two locks combine. The fleet persists the states and asks `decide` before it
reveals whether a password was right (docs/DECISIONS.md, "Fleet accounts").

A stranger can fail on anyone's account, so an account lock alone would let them keep the real
user out for as long as they care to. The rule that prevents it: while an account is locked, a
source that has not failed since the lock began is still served (once: its first wrong password
makes it one that has failed). The real user, on their own address, still gets in; an attacker
gets one guess per fresh address per lock, and the per-source lock bounds each address anyway.
Unknown accounts are counted exactly like existing ones, so a lock tells nobody which exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chargepin.core.errors import InvalidConfig
from chargepin.core.lockout import (
    Decision,
    LockoutConfig,
    LockoutState,
    check,
    quiet_from,
    record_failure,
)

ACCOUNT_LOCKOUT = LockoutConfig(failures=5, window=300.0, duration=300.0)
"""Wrong passwords for one account: 5 within 5 min lock it for 5 min, doubling to 24 h."""

SOURCE_LOCKOUT = LockoutConfig(failures=10, window=60.0, duration=300.0)
"""Wrong passwords (any account) and registration probes from one source address: 10 within
a minute lock it for 5 min, doubling to 24 h. Looser than an account's: an office or a mobile
operator's NAT puts many honest people behind one address."""


@dataclass(frozen=True)
class Throttle:
    """What one account or one source remembers: its lockout state and its last failure."""

    lockout: LockoutState = field(default_factory=LockoutState)
    last_failure: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"lockout": self.lockout.to_dict(), "last_failure": self.last_failure}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Throttle:
        """Read `to_dict` output (an empty or missing record is a fresh one)."""
        if not data:
            return cls()
        if not isinstance(data, Mapping) or set(data) - {"lockout", "last_failure"}:
            raise InvalidConfig(f"login throttle record is damaged: {data!r}")
        last = data.get("last_failure")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int | float)):
            raise InvalidConfig(f"login throttle last_failure must be a time, got {last!r}")
        return cls(LockoutState.from_dict(data.get("lockout") or {}), last)


def decide(account: Throttle, source: Throttle, now: float) -> Decision:
    """Whether a login attempt (or a password check) may be served at `now`.

    A locked source is refused. A locked account is refused too, unless the source has not
    failed since the account's lock began: the real user is not kept out by a stranger.
    """
    by_source = check(SOURCE_LOCKOUT, source.lockout, now)
    if not by_source.allowed:
        return by_source
    by_account = check(ACCOUNT_LOCKOUT, account.lockout, now)
    if by_account.allowed:
        return by_account
    locked_from = account.lockout.locked_from
    if source.last_failure is None or (
        locked_from is not None and source.last_failure < locked_from
    ):
        return Decision(allowed=True, retry_after=0.0)
    return by_account


def record_wrong_password(
    account: Throttle, source: Throttle, now: float
) -> tuple[Throttle, Throttle]:
    """Both records after a served attempt with a wrong password (or an unknown account)."""
    return (
        Throttle(record_failure(ACCOUNT_LOCKOUT, account.lockout, now), now),
        record_probe(source, now),
    )


def record_probe(source: Throttle, now: float) -> Throttle:
    """The source's record after a failure that concerns no account (a registration probe)."""
    return Throttle(record_failure(SOURCE_LOCKOUT, source.lockout, now), now)


def account_forgotten_at(account: Throttle) -> float | None:
    """When an account's record may be deleted (None: now): its lockout is quiet. Its last
    failure alone decides nothing (`decide` reads a source's, never an account's)."""
    return quiet_from(ACCOUNT_LOCKOUT, account.lockout)


def source_forgotten_at(source: Throttle) -> float | None:
    """When a source's record may be deleted (None: now). Besides its own lockout, its last
    failure matters while an account lock that began before it may last (`decide` refuses a
    source that failed during the account's lock): at most ACCOUNT_LOCKOUT.cap after it.
    Forgotten sooner, an attacker would get a guess per source per window instead of one per
    account lock."""
    horizons = [quiet_from(SOURCE_LOCKOUT, source.lockout)]
    if source.last_failure is not None:
        horizons.append(source.last_failure + ACCOUNT_LOCKOUT.cap)
    return max((t for t in horizons if t is not None), default=None)
