"""Accounts: registration, login with its throttle, sessions (bearer tokens), password change.

Wrong passwords are counted per account and per source address with the core rules
(core/login_throttle.py). A failure is counted in the transaction that refuses it: the two
throttle rows are locked FOR UPDATE, the decision is taken again under the lock, the failure is
written and committed, and only then is the 401 raised (the request's unit of work rolls back
on an error, which would otherwise drop the count). The argon2 work runs before the rows are
locked, so a SQLite database is not held for its duration; an attempt already refused by the
unlocked read is answered 429 without it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from chargepin.core.errors import format_duration
from chargepin.core.lockout import Decision
from chargepin.core.login_throttle import (
    Throttle,
    account_forgotten_at,
    decide,
    record_probe,
    record_wrong_password,
    source_forgotten_at,
)
from chargepin.fleet import pruning
from chargepin.fleet.errors import Conflict, Forbidden, TooManyAttempts, Unauthorized
from chargepin.fleet.models import LoginThrottle, Token, User
from chargepin.fleet.security import Passwords, new_token, token_digest

WRONG_CREDENTIALS = "wrong e-mail or password"


def account_key(email: str) -> str:
    """The throttle row of an address typed at login, whether or not it has an account."""
    return "account:" + hashlib.sha256(email.lower().encode()).hexdigest()


def source_key(host: str | None) -> str:
    """The throttle row of a client address: an IPv6 client counts as its /64 (one subscriber
    gets a whole /64, so single addresses would cost an attacker nothing)."""
    if not host:
        return "source:unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "source:" + host[:64]  # not an IP (a test client, a Unix socket): as named
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return f"source:{ipaddress.IPv6Network((address, 64), strict=False)}"
    mapped = getattr(address, "ipv4_mapped", None)
    return f"source:{mapped or address}"


@dataclass(frozen=True)
class Attempt:
    """Who is trying: the address typed (known or not) and where the request came from."""

    email: str
    source: str | None

    @property
    def keys(self) -> tuple[str, str]:
        return account_key(self.email), source_key(self.source)


def _read(db: Session, keys: Sequence[str], now: float, *, lock: bool) -> list[Throttle]:
    """The records of `keys`; with `lock`, created if missing and locked FOR UPDATE in key
    order (concurrent attempts on the same rows then run one at a time; SQLite serialises
    writers anyway, and the INSERT takes its write lock before anything is decided). A row
    made here and never written (the password was right) may be forgotten at once.

    On PostgreSQL another request may prune an expired row between the INSERT that found it
    and the lock (fleet/pruning.py): the lock then finds no row, and the row is made again.
    """
    query = select(LoginThrottle).where(LoginThrottle.key.in_(keys)).order_by(LoginThrottle.key)
    if not lock:
        rows = {row.key: row.state for row in db.scalars(query)}
        return [Throttle.from_dict(rows.get(key)) for key in keys]
    dialect = db.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    empty = {"state": {}, "forget_after": pruning.forget_after(None, now)}
    # ... and reload rows the unlocked read left in the session
    query = query.with_for_update().execution_options(populate_existing=True)
    while True:
        for key in sorted(keys):
            db.execute(insert(LoginThrottle).values(key=key, **empty).on_conflict_do_nothing())
        rows = {row.key: row.state for row in db.scalars(query)}
        if rows.keys() >= set(keys):
            return [Throttle.from_dict(rows[key]) for key in keys]


def _forgotten_at(key: str, record: Throttle) -> float | None:
    return (source_forgotten_at if key.startswith("source:") else account_forgotten_at)(record)


def _write(db: Session, records: Mapping[str, Throttle], now: float) -> None:
    """Store records of rows `_read` locked, with when each may be forgotten; forget up to a
    batch of other rows that expired (fleet/pruning.py)."""
    for key, record in records.items():
        row = db.get(LoginThrottle, key)
        if row is None:  # unreachable after a locked read; kept total for clarity
            raise LookupError(f"login throttle row {key} was not locked first")
        row.state = record.to_dict()
        row.forget_after = pruning.forget_after(_forgotten_at(key, record), now)
    db.flush()
    pruning.prune(db, LoginThrottle, now, pruning.BATCH)


def _refuse_unless(decision: Decision) -> None:
    if not decision.allowed:
        raise TooManyAttempts(
            "too many wrong passwords for this account or from this address; try again in "
            f"{format_duration(decision.retry_after)} (an address that has not failed can "
            "still log in)",
            retry_after=decision.retry_after,
        )


def check_password(
    db: Session,
    passwords: Passwords,
    attempt: Attempt,
    password: str,
    now: float,
    *,
    rehash: bool = True,
) -> User:
    """The account whose password this is, or 401 (counted) or 429 (locked, not served).

    Unknown accounts get the same work (one argon2 verification), the same counting and the
    same answer as a wrong password. With `rehash`, a right password whose hash was made with
    other parameters than the service's profile is hashed again with the profile's
    (docs/DECISIONS.md, "Fleet accounts"), in the caller's transaction.
    """
    keys = attempt.keys
    account, source = _read(db, keys, now, lock=False)
    _refuse_unless(decide(account, source, now))  # cheap, before argon2
    user = db.scalar(select(User).where(User.email == attempt.email.lower()))
    correct = passwords.verify(None if user is None else user.password_hash, password)
    rehashed = None
    if rehash and correct and user is not None and passwords.needs_rehash(user.password_hash):
        rehashed = passwords.hash(password)  # before the lock too
    account, source = _read(db, keys, now, lock=True)
    _refuse_unless(decide(account, source, now))  # the decision that counts: under the lock
    if correct and user is not None:
        if rehashed is not None:
            user.password_hash = rehashed
        return user
    account, source = record_wrong_password(account, source, now)
    _write(db, dict(zip(keys, (account, source), strict=True)), now)
    db.commit()  # the count outlives the refusal
    raise Unauthorized(WRONG_CREDENTIALS)


def register(
    db: Session, passwords: Passwords, email: str, password: str, source: str | None, now: float
) -> User:
    """A new account, or 409 for an address that has one (counted against the source).

    The password is hashed either way, so both answers cost the same time; the 409 itself is
    kept (docs/DECISIONS.md, "Fleet accounts": without e-mail there is no honest way to hide
    it), and a source that probes addresses with it is locked like one guessing passwords.
    """
    key = source_key(source)
    (record,) = _read(db, [key], now, lock=False)
    _refuse_unless(decide(Throttle(), record, now))  # cheap, before argon2
    password_hash = passwords.hash(password)
    email = email.lower()
    if db.scalar(select(User.id).where(User.email == email)) is None:
        user = User(email=email, password_hash=password_hash)
        db.add(user)
        db.flush()
        return user
    (record,) = _read(db, [key], now, lock=True)
    _refuse_unless(decide(Throttle(), record, now))
    _write(db, {key: record_probe(record, now)}, now)
    db.commit()  # the count outlives the refusal
    raise Conflict(f"an account for {email} exists already; log in instead")


def start_session(db: Session, user: User, expires: dt.datetime) -> str:
    """A new bearer token for `user` (only its digest is stored)."""
    token = new_token()
    db.add(Token(user_id=user.id, token_hash=token_digest(token), expires_at=expires))
    return token


def end_sessions(db: Session, user: User, *, keep: bytes | None = None) -> int:
    """End `user`'s sessions but the one whose digest is `keep`; how many ended."""
    query = delete(Token).where(Token.user_id == user.id)
    if keep is not None:
        query = query.where(Token.token_hash != keep)
    ended = db.execute(query).rowcount  # type: ignore[attr-defined]
    return int(ended)


def end_session(db: Session, digest: bytes) -> None:
    """End the session of one token (logout)."""
    db.execute(delete(Token).where(Token.token_hash == digest))


def change_password(
    db: Session,
    passwords: Passwords,
    user: User,
    attempt: Attempt,
    old_password: str,
    new_password: str,
    keep: bytes,
    now: float,
) -> int:
    """Set a new password after checking the old one (throttled like a login); ends every
    other session, since one of them may be why the password changes. How many ended."""
    try:
        check_password(db, passwords, attempt, old_password, now, rehash=False)
    except Unauthorized:  # counted and committed; the caller's login itself is fine
        raise Forbidden("the old password is wrong; nothing was changed") from None
    user.password_hash = passwords.hash(new_password)
    return end_sessions(db, user, keep=keep)
