"""Who may do what with a charger: the one place the fleet service checks roles.

Roles (PRODUCT.md): the `owner` may do everything; an invited `user` may see Charger Info and
the PIN and connect, not change the PIN or manage people. A revoked user gets 403 saying the
owner revoked the access (they knew the charger: nothing is revealed by saying so); strangers get
404, so serial numbers cannot be probed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargepin.fleet.errors import Forbidden, NotFound
from chargepin.fleet.models import Charger, Membership, User

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


def require_owner(db: Session, user: User, serial: str, what: str) -> Charger:
    """The charger if the caller owns it, else 403 saying only the owner may do `what`."""
    charger, member = membership(db, user, serial)
    if member.role != OWNER:
        raise Forbidden(f"only the charger's owner can {what}; ask the owner")
    return charger
