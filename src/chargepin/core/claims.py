"""Who may claim a charger by its sticker, and what a wrong claim code costs (sans-IO).

Claim codes are 60 random bits, guessable only by trying, so wrong ones are counted with the
lockout machine (core/lockout.py) per account and per source (the caller's network). The rule,
issue 9 ("strangers can block commissioning"):

* The code is checked first. A correct code is never refused because of someone else's
  failures: there is no per-charger lock any more (five wrong codes from strangers used to lock
  the installer's own sticker out for 5 minutes, doubling to 24 h), and a locked source still
  lets in an account that has no wrong codes of its own (a shared NAT, an office, a proxy).
* A caller pays for their own wrong codes: 5 within 60 s lock their account for 300 s
  (doubling on repeat, capped at 24 h), whatever code it sends next, right or wrong.
* A source with many wrong codes (from any accounts) is locked too; while it is, an account
  from it that has failed recently is refused whatever its code, and every refused attempt is
  counted against that account. Fresh accounts from a locked source get one guess each.
* Wrong codes on unknown, unclaimed and claimed serials are the same failure with the same
  answer (serials cannot be probed); only the sticker's own code on a claimed charger learns
  that it already has an owner (the holder of the sticker may know that).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from chargepin.core.lockout import LockoutConfig, LockoutState, check, quiet_from, record_failure

ACCOUNT_LOCKOUT = LockoutConfig(failures=5, window=60.0, duration=300.0)
"""Wrong claim codes from one account: 5 within 60 s lock it for 300 s (doubling, 24 h cap)."""

SOURCE_LOCKOUT = LockoutConfig(failures=10, window=60.0, duration=300.0)
"""Wrong claim codes from one source (an IPv4 address, an IPv6 /64), whichever accounts sent
them: 10 within 60 s lock the source for accounts that have failed (doubling, 24 h cap)."""


class Verdict(Enum):
    """What a claim attempt gets."""

    CLAIM = "claim"
    """The code is right and the charger has no owner: the caller becomes its owner."""
    ALREADY_OWNED = "already_owned"
    """The code is the sticker's own, and the charger was claimed with it already (409)."""
    WRONG_CODE = "wrong_code"
    """Unknown serial, wrong code, or a claimed charger with a wrong code: one answer (403)."""
    LOCKED = "locked"
    """The caller's account, or its source for an account that has failed, is locked (429)."""


@dataclass(frozen=True)
class ClaimDecision:
    """The verdict, the lockout states to store, and for a lock how long it lasts."""

    verdict: Verdict
    account: LockoutState
    source: LockoutState
    retry_after: float = 0.0
    locked_by: str = ""
    """For LOCKED: "account" or "source"; for WRONG_CODE: the lock this failure started, if any
    (then `retry_after` is how long it lasts)."""


def has_failed_recently(state: LockoutState, now: float) -> bool:
    """Whether an account has wrong codes in the window or a lock in the growth window."""
    recent = state.prune(ACCOUNT_LOCKOUT, now)
    return bool(recent.failures or recent.recent_lockouts or recent.locked_until)


def decide(
    *,
    code_ok: bool,
    claimed: bool,
    account: LockoutState,
    source: LockoutState,
    now: float,
) -> ClaimDecision:
    """The outcome of one claim attempt at `now` and the lockout states after it."""
    mine = check(ACCOUNT_LOCKOUT, account, now)
    if not mine.allowed:  # the caller's own failures: nothing it sends is served
        return ClaimDecision(Verdict.LOCKED, account, source, mine.retry_after, "account")
    shared = check(SOURCE_LOCKOUT, source, now)
    if not shared.allowed and (has_failed_recently(account, now) or not code_ok):
        # Refused without saying whether the code was right; the account pays for the try.
        counted = record_failure(ACCOUNT_LOCKOUT, account, now)
        return ClaimDecision(Verdict.LOCKED, counted, source, shared.retry_after, "source")
    if code_ok:
        return ClaimDecision(Verdict.ALREADY_OWNED if claimed else Verdict.CLAIM, account, source)
    account_after = record_failure(ACCOUNT_LOCKOUT, account, now)
    source_after = record_failure(SOURCE_LOCKOUT, source, now)
    for whose, config, state in (
        ("account", ACCOUNT_LOCKOUT, account_after),
        ("source", SOURCE_LOCKOUT, source_after),
    ):
        started = check(config, state, now)
        if not started.allowed:
            return ClaimDecision(
                Verdict.WRONG_CODE, account_after, source_after, started.retry_after, whose
            )
    return ClaimDecision(Verdict.WRONG_CODE, account_after, source_after)


def source_forgotten_at(source: LockoutState) -> float | None:
    """When a source's record may be deleted (None: now): `decide` reads only its lockout."""
    return quiet_from(SOURCE_LOCKOUT, source)
