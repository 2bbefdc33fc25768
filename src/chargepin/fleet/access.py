"""Who may do what with a charger: the one place the fleet service checks roles.

Roles (PRODUCT.md): the `owner` may do everything; an invited `user` may see Charger Info and
the PIN and connect, not change the PIN or manage people. A revoked user gets 403 saying the
owner revoked the access (they knew the charger: nothing is revealed by saying so); strangers get
404, so serial numbers cannot be probed.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, cast

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from chargepin.fleet.errors import Forbidden, NotFound
from chargepin.fleet.models import Charger, Membership, Token, User
from chargepin.fleet.pins import ChargerFacts
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


LIVE_MEMBER = (
    select(
        Token.expires_at,
        Token.user_id,
        Membership.role,
        Charger.id,
        Charger.serial,
        Charger.model,
        Charger.firmware,
        Charger.produced,
        Charger.epoch,
        Charger.generation,
        Charger.secret_ct,
        Charger.custom_pin_ct,
        Charger.pin_enabled,
    )
    .join(Membership, Membership.user_id == Token.user_id)
    .join(Charger, Charger.id == Membership.charger_id)
    .where(
        Token.token_hash == bindparam("token_hash"),
        Charger.serial == bindparam("serial"),
        Membership.revoked_at.is_(None),
    )
)
"""Built once with bound parameters: executing it builds no SQL expression per request."""


class LiveMember(ChargerFacts, Protocol):
    """The hot path's row: the caller's id and role next to the charger's columns."""

    @property
    def user_id(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def pin_enabled(self) -> bool: ...
    @property
    def expires_at(self) -> dt.datetime: ...


def live_member_by_token(
    db: Connection, token_hash: bytes, serial: str, now: dt.datetime
) -> LiveMember | None:
    """The hot path's one query, without the ORM: token, live membership and charger together.

    The row has `user_id`, `role` and the charger's columns under their own names (`id`,
    `serial`, `epoch`, ...), so the PIN rules read it like a `Charger`. None when any of it does
    not hold; the caller then takes the ordinary path (login, then `membership`), which says
    exactly what was wrong. Only the success case is short-cut.
    """
    row = db.execute(LIVE_MEMBER, {"token_hash": token_hash, "serial": serial}).first()
    return live_member(row, now)


def live_member(row: object | None, now: dt.datetime) -> LiveMember | None:
    """A row of LIVE_MEMBER (however it was read) as the caller's live membership, or None when
    there is none or the login has expired at `now`."""
    if row is None or aware(cast(LiveMember, row).expires_at) <= now:
        return None
    return cast(LiveMember, row)


def require_owner(db: Session, user: User, serial: str, what: str) -> Charger:
    """The charger if the caller owns it, else 403 saying only the owner may do `what`."""
    charger, member = membership(db, user, serial)
    if member.role != OWNER:
        raise Forbidden(f"only the charger's owner can {what}; ask the owner")
    return charger
