"""Presence: the fleet's nonces, and the pairing PIN only for a device that proved it is the
charger (issue 9 point 8; the rule and the proof's layout are core/presence.py).

A member's app asks for a nonce, has the device on its link answer it, and hands the answer
back with the phone's address on that link. The fleet spends the nonce (once, whatever the
answer), checks the MAC with the charger's secret, follows the state the charger proved (a
fresh attestation) and answers the PIN of that epoch, audited like every reveal. Nonces live
in the database, so any worker can check one another issued.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chargepin.core.epochs import pin_fingerprint
from chargepin.core.pin import Pin
from chargepin.core.presence import (
    MAX_LIVE_NONCES,
    NONCE_SIZE,
    NONCE_TTL,
    NonceRefusal,
    PresenceInvalid,
    PresenceProof,
    nonce_refusal,
    verify,
)
from chargepin.fleet import pins
from chargepin.fleet.access import require_member
from chargepin.fleet.chargers import pin_for_epoch
from chargepin.fleet.errors import Conflict, FleetError, TooManyAttempts, Unprocessable
from chargepin.fleet.models import PresenceNonce, User
from chargepin.fleet.tickets import follow_proven
from chargepin.fleet.times import aware, moment
from chargepin.fleet.vault import Vault

PRESENCE_INVALID = "presence_invalid"
"""The stable code of a proof that does not verify: the app says "this device is not charger X"."""


class NonceExpired(FleetError):
    status = 410
    code = "presence_nonce_expired"


@dataclass(frozen=True)
class IssuedNonce:
    nonce: bytes
    expires_at: float


@dataclass(frozen=True)
class VouchedPin:
    epoch: int
    pin: Pin


def _digest(nonce: bytes) -> bytes:
    return hashlib.sha256(nonce).digest()


def issue_nonce(db: Session, user: User, serial: str, now: float) -> IssuedNonce:
    """A fresh nonce for a member of `serial` (strangers 404, revoked members 403).

    This member's expired nonces for the charger are deleted here, so the table holds at most
    MAX_LIVE_NONCES rows per member and charger plus those spent within NONCE_TTL (kept so a
    replay is answered "used", not "unknown").
    """
    charger, _member = require_member(db, user, serial)
    mine = (PresenceNonce.charger_id == charger.id, PresenceNonce.user_id == user.id)
    db.execute(
        delete(PresenceNonce).where(*mine, PresenceNonce.issued_at < moment(now - NONCE_TTL))
    )
    live = list(
        db.scalars(select(PresenceNonce.issued_at).where(*mine, PresenceNonce.used_at.is_(None)))
    )
    if len(live) >= MAX_LIVE_NONCES:
        oldest = min(aware(at).timestamp() for at in live)
        raise TooManyAttempts(
            f"you hold {len(live)} unused presence nonces for this charger; use one, or wait "
            "for one to expire",
            retry_after=max(1.0, oldest + NONCE_TTL - now),
            code="too_many_nonces",
        )
    nonce = secrets.token_bytes(NONCE_SIZE)
    db.add(
        PresenceNonce(
            charger_id=charger.id,
            user_id=user.id,
            nonce_hash=_digest(nonce),
            issued_at=moment(now),
        )
    )
    db.flush()
    return IssuedNonce(nonce, now + NONCE_TTL)


def live_nonce_count(db: Session) -> int:
    """Rows in the nonce table (tests watch it stay bounded)."""
    return int(db.scalar(select(func.count()).select_from(PresenceNonce)) or 0)


def pin_for_presence(
    db: Session,
    vault: Vault,
    user: User,
    serial: str,
    nonce: bytes,
    proof: bytes,
    address: str,
    app_version: str,
    now: float,
) -> VouchedPin:
    """The PIN to type into the device that answered `nonce` with `proof` on the link where
    the member's phone is `address`; refused with the reason for anything else."""
    charger, _member = require_member(db, user, serial)
    row = db.scalar(
        select(PresenceNonce).where(
            PresenceNonce.nonce_hash == _digest(nonce),
            PresenceNonce.charger_id == charger.id,
            PresenceNonce.user_id == user.id,
        )
    )
    if row is None:
        raise Unprocessable(
            f"that nonce was not issued to you for charger {serial} (or expired long ago); "
            f"ask for a new one (POST /chargers/{serial}/presence/nonces)",
            code="presence_nonce_unknown",
        )
    refusal = nonce_refusal(
        issued_at=aware(row.issued_at).timestamp(), used=row.used_at is not None, now=now
    )
    # Spent in one statement, so two requests racing with one nonce cannot both pass.
    spent = db.execute(
        update(PresenceNonce)
        .where(PresenceNonce.id == row.id, PresenceNonce.used_at.is_(None))
        .values(used_at=moment(now))
        .execution_options(synchronize_session=False)
    )
    if refusal is NonceRefusal.USED or spent.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "that nonce was already used: each proof needs a fresh nonce; ask for a new one",
            code="presence_nonce_used",
        )
    if refusal is NonceRefusal.EXPIRED:
        raise NonceExpired(
            f"that nonce expired ({NONCE_TTL:.0f} s after it was issued); ask for a new one "
            "and have the charger answer it at once",
            keep_writes=True,
        )
    secret = pins.charger_secret(vault, charger)
    try:
        state = verify(secret, serial, nonce, address, PresenceProof.decode(proof))
    except PresenceInvalid as error:
        raise Unprocessable(str(error), code=PRESENCE_INVALID, keep_writes=True) from None
    follow_proven(db, vault, charger, secret, state)
    pin = pin_for_epoch(db, vault, charger, user.id, state.epoch, app_version, now)
    if pin_fingerprint(secret, serial, pin) != state.fingerprint:
        # Never a PIN the charger proved it does not use: typing it would be a failed attempt.
        raise Conflict(
            "the charger proved a PIN the fleet does not know (a change it has not heard of "
            "yet); the owner's phone reconciles it when it next connects, then try again",
            code="pin_not_recognised",
        )
    return VouchedPin(state.epoch, pin)
