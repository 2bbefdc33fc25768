"""People and phones of a charger: invitations, memberships, revocation, phone-reported facts.

PRODUCT.md: the owner invites by e-mail address; the invitee accepts with their own account and
becomes a `user`; the owner can revoke, and "removing an invited user removes their phones". The
fleet sends no e-mail: an invitation is a one-time code the owner passes on (message, QR, by
voice); only its SHA-256 is stored. Phones report facts they read from the charger (firmware,
wrong PINs, lockouts) as security events the owner can list. A member's phones are what the
charger vouched for (core.bond_statement, relayed by the phone after pairing), never an address
a member names: those are the phones revoking the member lists for removal (issue 9).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from chargepin.core import bond_statement
from chargepin.core.bond_statement import Attribution, BondStatementInvalid, Holder
from chargepin.core.events import PhoneReport
from chargepin.core.policy import PinMode, pin_policy
from chargepin.core.tickets import Action
from chargepin.fleet import pins
from chargepin.fleet.access import USER, require_member, require_owner
from chargepin.fleet.csms import outbox
from chargepin.fleet.db import keyset_page
from chargepin.fleet.errors import Conflict, FleetError, Forbidden, NotFound, Unprocessable
from chargepin.fleet.models import (
    Charger,
    Invitation,
    Membership,
    PhoneBond,
    PinReveal,
    SecurityEvent,
    User,
)
from chargepin.fleet.security import token_digest
from chargepin.fleet.times import aware
from chargepin.fleet.vault import Vault

INVITATION_CODE_BYTES = 12
"""96 random bits per invitation code: unguessable within an invitation's lifetime."""


class InvitationInvalid(FleetError):
    """An invitation code that cannot be accepted as it is (unknown, expired, revoked)."""

    status = 404
    code = "invitation_invalid"


class InvitationExpired(FleetError):
    status = 410
    code = "invitation_expired"


@dataclass(frozen=True)
class NewInvitation:
    """The code to pass on (shown once, never stored) and when it stops working."""

    id: int
    code: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class InvitationView:
    """An invitation as its owner sees it (never the code: only its hash is stored)."""

    id: int
    email: str
    created_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None


@dataclass(frozen=True)
class Accepted:
    serial: str
    role: str


@dataclass(frozen=True)
class MemberView:
    user_id: int
    email: str
    role: str
    since: dt.datetime
    revoked: bool
    revoked_at: dt.datetime | None
    phones: tuple[str, ...]


@dataclass(frozen=True)
class Revoked:
    """A revoked member and the phones the owner should now remove from the charger."""

    user_id: int
    email: str
    revoked_at: dt.datetime
    phones: tuple[str, ...]
    pins_seen: int
    """Reveals of this charger's PIN the member had in its current generation (audited)."""
    rekey_offered: bool
    """Whether the owner should re-key: the member saw a PIN that still belongs to the
    charger's sequence (DECISIONS.md, "Re-key")."""
    charger_id: int = 0
    commands: tuple[int, ...] = ()
    """The outbox commands that carry the revocation to the charger over OCPP (remove_phone
    for each phone, the re-key when asked): fleet/csms/outbox.py."""


@dataclass(frozen=True)
class PhoneView:
    """A phone the charger vouched for, now listed as this member's."""

    address: str
    sequence: int
    user_id: int
    attested_at: dt.datetime


@dataclass(frozen=True)
class EventView:
    id: int
    kind: str
    detail: str
    user_id: int
    at: dt.datetime


def invite(
    db: Session, owner: User, serial: str, email: str, now: dt.datetime, lifetime: float
) -> NewInvitation:
    """A one-time code that makes the account with `email` a user of charger `serial`."""
    charger = require_owner(db, owner, serial, "invite people")
    email = email.strip().lower()
    member = _membership_of_email(db, charger, email)
    if member is not None and member.revoked_at is None:
        raise Conflict(
            f"{email} is already the charger's {member.role}; nothing to invite"
            if member.user_id != owner.id
            else "you own this charger; invite someone else"
        )
    # Only the newest code for an address works: a code passed on earlier stops working.
    for older in db.scalars(
        select(Invitation).where(
            Invitation.charger_id == charger.id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    ):
        older.revoked_at = now
    code = secrets.token_urlsafe(INVITATION_CODE_BYTES)
    expires = now + dt.timedelta(seconds=lifetime)
    invitation = Invitation(
        charger_id=charger.id,
        email=email,
        code_hash=token_digest(code),
        invited_by=owner.id,
        created_at=now,
        expires_at=expires,
    )
    db.add(invitation)
    db.flush()
    return NewInvitation(invitation.id, code, expires)


def _view(invitation: Invitation) -> InvitationView:
    withdrawn = invitation.revoked_at
    return InvitationView(
        id=invitation.id,
        email=invitation.email,
        created_at=aware(invitation.created_at),
        expires_at=aware(invitation.expires_at),
        withdrawn_at=None if withdrawn is None else aware(withdrawn),
    )


def open_invitations(
    db: Session, owner: User, serial: str, now: dt.datetime
) -> list[InvitationView]:
    """The charger's invitations that can still be accepted, oldest first (owner only)."""
    charger = require_owner(db, owner, serial, "see the invitations")
    rows = db.scalars(
        select(Invitation)
        .where(
            Invitation.charger_id == charger.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .order_by(Invitation.created_at, Invitation.id)
    )
    return [_view(row) for row in rows if aware(row.expires_at) > now]


def withdraw(
    db: Session, owner: User, serial: str, invitation_id: int, now: dt.datetime
) -> InvitationView:
    """Withdraw an invitation before it is accepted: its code stops working at once.

    Withdrawing twice answers the same, so an app that lost the first answer can retry. An
    invitation already accepted cannot be withdrawn: the person is a member; revoke them.
    """
    charger = require_owner(db, owner, serial, "withdraw invitations")
    invitation = db.scalar(
        select(Invitation).where(
            Invitation.id == invitation_id, Invitation.charger_id == charger.id
        )
    )
    if invitation is None:
        raise NotFound(
            f"charger {serial} has no invitation {invitation_id}; list the open invitations"
        )
    if invitation.accepted_at is not None:
        raise Conflict(
            f"{invitation.email} already accepted this invitation; revoke the member instead",
            code="invitation_used",
        )
    if invitation.revoked_at is None:
        invitation.revoked_at = now
    return _view(invitation)


def accept(db: Session, user: User, code: str, now: dt.datetime) -> Accepted:
    """Make `user` a user of the invitation's charger; a code works once, for one address."""
    invitation = db.scalar(
        select(Invitation).where(Invitation.code_hash == token_digest(code.strip()))
    )
    if invitation is None or invitation.revoked_at is not None:
        raise InvitationInvalid(
            "no such invitation (mistyped, or withdrawn by the owner); ask the owner for a new one"
        )
    if invitation.accepted_at is not None:
        raise Conflict(
            "this invitation was used already; it works once: ask the owner for a new one",
            code="invitation_used",
        )
    if aware(invitation.expires_at) <= now:
        raise InvitationExpired("this invitation expired; ask the owner for a new one")
    if user.email.lower() != invitation.email:
        raise Forbidden(
            f"this invitation is for {invitation.email}; log in with that account to accept it",
            code="wrong_account",
        )
    # Take the invitation with a conditional write whose row count decides, as a claim does: of
    # two accepts at once the second waits for the first's lock, then finds it taken (409). A
    # check-then-set let both pass and the second fail its insert with a 500 (issue 9).
    taken = cast(
        CursorResult[Any],
        db.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(accepted_at=now)
        ),
    )
    if taken.rowcount != 1:
        raise Conflict(
            "this invitation was used or withdrawn a moment ago; it works once: ask the owner "
            "for a new one",
            code="invitation_used",
        )
    charger = db.get(Charger, invitation.charger_id)
    assert charger is not None  # foreign key, ON DELETE CASCADE
    member = db.scalar(
        select(Membership).where(Membership.charger_id == charger.id, Membership.user_id == user.id)
    )
    if member is not None and member.revoked_at is None:
        raise Conflict(
            f"you are already the {member.role} of charger {charger.serial}; nothing to accept"
        )
    if member is None:
        member = Membership(charger_id=charger.id, user_id=user.id, role=USER, created_at=now)
        db.add(member)
    else:
        # A new invitation is the only way back in after a revocation.
        member.role, member.revoked_at, member.created_at = USER, None, now
    return Accepted(charger.serial, USER)


def members(db: Session, owner: User, serial: str) -> list[MemberView]:
    """Everyone who is or was a member of the charger, oldest first, with their phones."""
    charger = require_owner(db, owner, serial, "see who has access")
    rows = db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.charger_id == charger.id)
        .order_by(Membership.created_at, Membership.id)
    ).all()
    phones = phones_by_member(db, charger)
    return [
        MemberView(
            user_id=user.id,
            email=user.email,
            role=member.role,
            since=aware(member.created_at),
            revoked=member.revoked_at is not None,
            revoked_at=None if member.revoked_at is None else aware(member.revoked_at),
            phones=phones.get(user.id, ()),
        )
        for member, user in rows
    ]


def revoke(
    db: Session, owner: User, serial: str, user_id: int, now: dt.datetime, *, rekey: bool = False
) -> Revoked:
    """Revoke a user's access; the member's phones (and the re-key, when asked) are queued for
    the charger in the outbox, delivered over OCPP at once if it is connected, else when it
    connects (fleet/csms/outbox.py). The answer still lists the phones, for an app near the
    charger to remove over Bluetooth.

    Revoking twice answers the same phones again and queues nothing already queued, so an app
    that lost the first answer can retry.
    """
    charger = require_owner(db, owner, serial, "revoke people")
    if user_id == owner.id:
        raise Conflict("you cannot revoke yourself as the owner; revoke the other members")
    row = db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.charger_id == charger.id, Membership.user_id == user_id)
    ).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of charger {serial}; list the members")
    member, user = row
    if member.revoked_at is None:
        member.revoked_at = now
    seen = pins_seen(db, charger, user.id)
    has_pin = pin_policy(charger.model, charger.firmware, charger.produced).mode is not (
        PinMode.UNSUPPORTED
    )
    if rekey and not has_pin:
        raise Conflict(
            f"charger {serial} has no PIN to re-key (its firmware does not support one); "
            "revoke without rekey",
            code="action_not_allowed",
        )
    phones = phones_of(db, charger, user.id)
    queued = outbox.open_commands(db, charger.id)
    commands = [
        outbox.enqueue(db, charger, Action.REMOVE_PHONE.value, {"address": a}, owner.id, now).id
        for a in phones
        if (Action.REMOVE_PHONE.value, (("address", a),)) not in queued
    ]
    if rekey and (Action.REKEY.value, ()) not in queued:
        commands.append(outbox.enqueue(db, charger, Action.REKEY.value, {}, owner.id, now).id)
    return Revoked(
        user.id,
        user.email,
        aware(member.revoked_at),
        phones,
        seen,
        has_pin and seen > 0,
        charger.id,
        tuple(commands),
    )


def pins_seen(db: Session, charger: Charger, user_id: int) -> int:
    """How many times the member saw a PIN of the charger's current generation."""
    return int(
        db.scalar(
            select(func.count())
            .select_from(PinReveal)
            .where(
                PinReveal.charger_id == charger.id,
                PinReveal.user_id == user_id,
                PinReveal.generation == charger.generation,
            )
        )
        or 0
    )


def phones_of(db: Session, charger: Charger, user_id: int) -> tuple[str, ...]:
    """The identity addresses the charger vouched for as this member's phones, by bond order."""
    return phones_by_member(db, charger, user_id).get(user_id, ())


def phones_by_member(
    db: Session, charger: Charger, user_id: int | None = None
) -> dict[int, tuple[str, ...]]:
    """`phones_of` for every member of the charger (or only `user_id`), in one query."""
    query = (
        select(PhoneBond.user_id, PhoneBond.address)
        .where(PhoneBond.charger_id == charger.id)
        .order_by(PhoneBond.sequence, PhoneBond.id)
    )
    if user_id is not None:
        query = query.where(PhoneBond.user_id == user_id)
    phones: dict[int, list[str]] = {}
    for member, address in db.execute(query):
        phones.setdefault(member, []).append(address)
    return {member: tuple(addresses) for member, addresses in phones.items()}


def relay_bond(
    db: Session, vault: Vault, user: User, serial: str, statement: bytes, now: dt.datetime
) -> PhoneView:
    """Record the phone a charger's bond statement vouches for as `user`'s (a live member).

    The statement must verify under the charger's secret (422 otherwise). A bond another account
    relayed first, or an older bond of an address another account holds, is 409
    (core.bond_statement.attribute).
    """
    charger, _member = require_member(db, user, serial)
    try:
        phone = bond_statement.verify(pins.charger_secret(vault, charger), serial, statement)
    except BondStatementInvalid as error:
        raise Unprocessable(str(error), code="bond_statement_invalid") from None
    row = db.scalar(
        select(PhoneBond)
        .where(PhoneBond.charger_id == charger.id, PhoneBond.address == phone.address)
        .with_for_update()
    )
    held = None if row is None else Holder(row.user_id, row.sequence, row.bond)
    verdict = bond_statement.attribute(held, user.id, phone)
    if verdict is Attribution.STALE:
        raise Conflict(
            f"{phone.address} is another account's phone: that account relayed this bond "
            "first, or the charger bonded the address again since; if this is your phone, "
            "pair it again and relay the new statement",
            code="bond_statement_stale",
        )
    if row is None:
        row = PhoneBond(
            charger_id=charger.id,
            user_id=user.id,
            address=phone.address,
            sequence=phone.sequence,
            bond=phone.bond,
            attested_at=now,
        )
        db.add(row)
    elif verdict is Attribution.RECORD:
        row.user_id, row.sequence, row.bond = user.id, phone.sequence, phone.bond
        row.attested_at = now
    db.flush()
    return PhoneView(row.address, row.sequence, row.user_id, aware(row.attested_at))


def report_event(
    db: Session, user: User, serial: str, kind: str, detail: str, now: dt.datetime
) -> EventView:
    """Store a fact a member's phone read from the charger."""
    charger, _member = require_member(db, user, serial)
    if kind not in set(PhoneReport):
        raise Unprocessable(
            f"unknown event kind {kind!r}; use one of {', '.join(PhoneReport)}",
            code="invalid_event",
        )
    if kind == PhoneReport.PHONE_ADDRESS:
        # Issue 9: a member named the owner's phone as theirs. Only the charger can say.
        raise Unprocessable(
            "phone_address reports are no longer taken: a member's phones are the ones the "
            f"charger vouches for; after pairing, read the charger's bond statement and POST it "
            f"to /chargers/{serial}/phones",
            code="phone_address_unattested",
        )
    detail = detail.strip()
    event = SecurityEvent(charger_id=charger.id, user_id=user.id, kind=kind, detail=detail, at=now)
    db.add(event)
    db.flush()
    return EventView(event.id, kind, detail, user.id, now)


def events(
    db: Session, owner: User, serial: str, limit: int, before: int | None
) -> list[EventView]:
    """`limit` of the charger's reported events below id `before` (all when None), newest
    first: keyset paging, so a member's flood of reports cannot hide the older ones."""
    charger = require_owner(db, owner, serial, "see the charger's security events")
    query = select(SecurityEvent).where(SecurityEvent.charger_id == charger.id)
    rows = db.scalars(keyset_page(query, SecurityEvent.id, before, limit))
    return [EventView(e.id, e.kind, e.detail, e.user_id, aware(e.at)) for e in rows]


def _membership_of_email(db: Session, charger: Charger, email: str) -> Membership | None:
    return db.scalar(
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .where(Membership.charger_id == charger.id, User.email == email)
    )


__all__ = ["accept", "events", "invite", "members", "relay_bond", "revoke"]
