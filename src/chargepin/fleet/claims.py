"""Commissioning by sticker: the claim, its code's keyed digest, its lockouts per account and
per source (the rule: core/claims.py).

The claim runs in the request's one transaction (issue 9: a wrong claim used to open a second
connection to count itself, and 20 parallel ones emptied the pool for everyone). A wrong code
is counted in the transaction that refuses it, and the refusal commits (`keep_writes`, see
fleet/deps.py), so no failure is lost and none is counted twice.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from typing import Any, NoReturn, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from chargepin.core.claims import (
    SOURCE_LOCKOUT,
    ClaimDecision,
    Verdict,
    decide,
    source_forgotten_at,
)
from chargepin.core.errors import InvalidSticker, format_duration
from chargepin.core.lockout import LockoutState
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet import pruning
from chargepin.fleet.access import OWNER
from chargepin.fleet.chargers import ChargerView, charger_view
from chargepin.fleet.errors import Conflict, Forbidden, TooManyAttempts, Unprocessable
from chargepin.fleet.models import Charger, ClaimSource, Membership, User
from chargepin.fleet.times import moment
from chargepin.fleet.vault import KEY_ID_SIZE, Vault

INVALID_STICKER = (
    "this sticker code is not valid; scan the QR code on the charger's own sticker again"
)
ALREADY_OWNED = "this charger already has an owner; ask them to invite you"

CODE_PURPOSE = "claim-code"
"""The vault subkey that keys claim-code digests (Vault.subkey)."""
DIGEST_FORMAT = 1
LEGACY_DIGEST_SIZE = 32
"""Before issue 9 a claim code was kept as its bare SHA-256 (32 bytes): still verified."""


def code_digester(vault: Vault) -> Callable[[str, str], bytes]:
    """`digest(serial, code)`: what the fleet keeps of a claim code, format byte, vault key id
    and HMAC-SHA256 under the vault's claim-code subkey.

    Keyed (a leaked database alone no longer lets a GPU try all 2**60 codes) and bound to the
    serial (a digest copied to another charger's row does not verify). The key id lets a code
    made before a key rotation verify after it. The key is looked up once: the factory makes a
    million of these per run, and HMAC-SHA256 then costs about what SHA-256 did.
    """
    kid, key = vault.subkey(CODE_PURPOSE)
    prefix = bytes([DIGEST_FORMAT]) + kid
    keyed = hmac.new(key, digestmod=hashlib.sha256)  # the key's pads hashed once, then copied

    def digest(serial: str, code: str) -> bytes:
        mac = keyed.copy()
        mac.update(_message(serial, code))
        return prefix + mac.digest()

    return digest


def code_digest(vault: Vault, serial: str, code: str) -> bytes:
    """One claim code's digest (see `code_digester`)."""
    return code_digester(vault)(serial, code)


def code_matches(vault: Vault, stored: bytes | None, serial: str, code: str) -> bool:
    """Whether `code` is the one whose digest is `stored` (constant time in the code)."""
    if stored is None:
        return False
    if len(stored) == LEGACY_DIGEST_SIZE:
        return hmac.compare_digest(stored, hashlib.sha256(code.encode()).digest())
    if stored[0] != DIGEST_FORMAT or len(stored) != 1 + KEY_ID_SIZE + 32:
        return False
    _kid, key = vault.subkey(CODE_PURPOSE, stored[1 : 1 + KEY_ID_SIZE])
    return hmac.compare_digest(stored[1 + KEY_ID_SIZE :], _mac(key, serial, code))


def _mac(key: bytes, serial: str, code: str) -> bytes:
    return hmac.digest(key, _message(serial, code), "sha256")


def _message(serial: str, code: str) -> bytes:
    return f"{serial}\x00{code}".encode()


def source_of(host: str | None) -> str:
    """The source a claim is counted against: an IPv4 address, or an IPv6 address's /64
    (one subscriber's network: a host picks any address in it)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _state(data: dict[str, Any] | None) -> LockoutState:
    return LockoutState.from_dict(data) if data else LockoutState()


def _lock_account(db: Session, user_id: int) -> User:
    """The caller's row, re-read after a write that locks it.

    The no-op UPDATE is the lock on both databases: a row lock on PostgreSQL, the database's
    write lock on SQLite (where SELECT ... FOR UPDATE is not a thing and pysqlite begins the
    transaction only at the first write). Parallel claims of one account are then evaluated one
    after the other against what the previous one stored (issue 9: 12 parallel wrong claims
    were all evaluated against a limit of 5).
    """
    db.execute(
        update(User).where(User.id == user_id).values(claim_lockout=User.claim_lockout),
        execution_options={"synchronize_session": False},
    )
    user = db.get(User, user_id, populate_existing=True)
    assert user is not None  # the caller's own row: it authenticated this request
    return user


def _lock_source(db: Session, source: str, now: float) -> ClaimSource:
    """The source's row (created on first use), locked like the account's (taken after it:
    one order everywhere, so two claims never wait for each other in a circle).

    On PostgreSQL a claim from the same source may delete the row (nothing left to remember)
    while this one waits for its lock; the lock then finds no row, and the row is made again.
    """
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    while True:
        db.execute(
            insert(ClaimSource)
            .values(source=source, claim_lockout={}, forget_after=pruning.forget_after(None, now))
            .on_conflict_do_nothing(index_elements=["source"])
        )
        row = db.get(ClaimSource, source, with_for_update=True, populate_existing=True)
        if row is not None:
            return row


def claim(
    db: Session, vault: Vault, user: User, host: str | None, payload: str, now: float
) -> Charger:
    """Make `user` the owner of the charger whose sticker `payload` was scanned from `host`.

    Refusals that count (a wrong code, a lock that charged the account) are raised with
    `keep_writes`: the request's transaction commits the count, then answers.
    """
    try:
        sticker = StickerPayload.parse(payload)
    except InvalidSticker as error:
        raise Unprocessable(str(error), code="invalid_sticker") from None
    account = _lock_account(db, user.id)
    source = _lock_source(db, source_of(host), now)
    charger = db.scalar(select(Charger).where(Charger.serial == sticker.serial))
    if charger is None:
        code_digest(vault, sticker.serial, sticker.claim_code)  # as long as for a known serial
        code_ok = False
    else:
        code_ok = code_matches(vault, charger.claim_code_hash, sticker.serial, sticker.claim_code)
    decision = decide(
        code_ok=code_ok,
        claimed=charger is not None and charger.claimed_at is not None,
        account=_state(account.claim_lockout),
        source=_state(source.claim_lockout),
        now=now,
    )
    account.claim_lockout = decision.account.to_dict()
    if decision.source.prune(SOURCE_LOCKOUT, now) == LockoutState():
        db.delete(source)  # nothing to remember: the table holds only sources that failed
    else:
        source.claim_lockout = decision.source.to_dict()
        source.forget_after = pruning.forget_after(source_forgotten_at(decision.source), now)
    db.flush()
    pruning.prune(db, ClaimSource, now, pruning.BATCH)  # other sources gone quiet
    if decision.verdict is Verdict.CLAIM and charger is not None:
        return _take(db, charger, user, now)
    _refuse(decision)


def commission(
    db: Session,
    vault: Vault,
    user: User,
    host: str | None,
    payload: str,
    app_version: str,
    now: float,
) -> ChargerView:
    """Commissioning (PRODUCT.md): claim by the sticker, then Charger Info with the PIN right
    after the scan (audited), for the JSON API and the web app alike."""
    charger = claim(db, vault, user, host, payload, now)
    return charger_view(db, vault, charger, OWNER, user, app_version, now)


def _refuse(decision: ClaimDecision) -> NoReturn:
    whose = "from this account" if decision.locked_by == "account" else "from your network"
    if decision.verdict is Verdict.LOCKED:
        raise TooManyAttempts(
            f"too many invalid sticker codes {whose}; try again in "
            f"{format_duration(decision.retry_after)}",
            retry_after=decision.retry_after,
            keep_writes=True,
        )
    if decision.verdict is Verdict.ALREADY_OWNED:
        raise Conflict(ALREADY_OWNED)
    note = ""
    if decision.locked_by:
        wait = format_duration(decision.retry_after)
        note = f"; too many invalid codes {whose}, try again in {wait}"
    raise Forbidden(INVALID_STICKER + note, code="invalid_sticker", keep_writes=True)


def _take(db: Session, charger: Charger, user: User, now: float) -> Charger:
    """The claim itself: a conditional UPDATE whose row count decides a race of right codes.

    The code's digest stays, so the sticker's holder scanning it again learns the charger has
    an owner (409) while any other code gets the generic answer.
    """
    claimed = cast(
        CursorResult[Any],
        db.execute(
            update(Charger)
            .where(Charger.id == charger.id, Charger.claimed_at.is_(None))
            .values(claimed_at=moment(now)),
            execution_options={"synchronize_session": False},
        ),
    )
    if claimed.rowcount != 1:  # someone else's claim committed first
        raise Conflict(ALREADY_OWNED)
    db.add(Membership(charger_id=charger.id, user_id=user.id, role=OWNER, created_at=moment(now)))
    db.flush()
    db.refresh(charger)
    return charger
