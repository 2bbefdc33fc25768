"""Who may do what with a charger: the one place the fleet service checks roles.

Roles (PRODUCT.md): the `owner` may do everything; an invited `user` may see Charger Info and
the PIN and connect, not change the PIN or manage people. A revoked user gets 403 saying the
owner revoked the access (they knew the charger: nothing is revealed by saying so); strangers get
404, so serial numbers cannot be probed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargepin.fleet.errors import Forbidden, NotFound
from chargepin.fleet.models import Charger, Membership, Token, User
from chargepin.fleet.times import aware

OWNER = "owner"
USER = "user"


def membership(db: Session, user: User, serial: str) -> tuple[Charger, Membership]:
    """The charger and the caller's live membership, or 404 (never says the charger exists)."""
    row = db.execute(
        select(Charger, Membership)
        .join(Membership, Membership.charger_id == Charger.id)
        .where(
            Charger.serial == serial,
            Membership.user_id == user.id,
            Membership.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        revoked = db.scalar(
            select(Membership.id)
            .join(Charger, Membership.charger_id == Charger.id)
            .where(Charger.serial == serial, Membership.user_id == user.id)
        )
        if revoked is not None:
            raise Forbidden(
                f"the owner of {serial} revoked your access; ask them for a new invitation",
                code="revoked",
            )
        raise NotFound(f"no charger {serial} on your account; commission it or ask its owner")
    return row[0], row[1]


def require_member(db: Session, user: User, serial: str) -> tuple[Charger, Membership]:
    return membership(db, user, serial)


def live_member_by_token(
    db: Session, token_hash: bytes, serial: str, now: dt.datetime
) -> tuple[User, Charger, Membership] | None:
    """The hot path's one query: token, account, live membership and charger together.

    None when any of it does not hold; the caller then takes the ordinary path (login, then
    `membership`), which says exactly what was wrong. Only the success case is short-cut.
    """
    row = db.execute(
        select(User, Charger, Membership, Token.expires_at)
        .join(User, User.id == Token.user_id)
        .join(Membership, Membership.user_id == User.id)
        .join(Charger, Charger.id == Membership.charger_id)
        .where(
            Token.token_hash == token_hash,
            Charger.serial == serial,
            Membership.revoked_at.is_(None),
        )
    ).first()
    if row is None or aware(row[3]) <= now:
        return None
    return row[0], row[1], row[2]


def require_owner(db: Session, user: User, serial: str, what: str) -> Charger:
    """The charger if the caller owns it, else 403 saying only the owner may do `what`."""
    charger, member = membership(db, user, serial)
    if member.role != OWNER:
        raise Forbidden(f"only the charger's owner can {what}; ask the owner")
    return charger
