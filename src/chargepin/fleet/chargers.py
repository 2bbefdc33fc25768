"""Chargers as their members see them: Charger Info, PIN reveals (commissioning: claims.py).

PRODUCT.md: the installer scans the sticker and the PIN is shown right after the scan; Charger
Info shows the PIN at any time to the owner and invited users; after a wrong PIN the
troubleshooting screen shows the PIN of the epoch the charger now advertises. Every PIN that
leaves the vault is audited (a PinReveal row: who, when, which app, which epoch).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field, replace
from typing import Protocol, cast

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.orm import Session

from chargepin.core.pin import Pin
from chargepin.core.policy import FirmwareVersion, PinMode, PinPolicy, pin_policy
from chargepin.fleet.db import keyset_page
from chargepin.fleet.errors import Conflict, Unprocessable
from chargepin.fleet.models import Charger, Membership, PinReveal, User
from chargepin.fleet.pins import ChargerFacts, Labelled, active_pin
from chargepin.fleet.times import aware, moment
from chargepin.fleet.vault import Vault

MESSAGE_PIN_OFF = "PIN not enabled"
MESSAGE_UPDATE_CHARGER = "update the charger"


def policy_of(charger: Labelled) -> PinPolicy:
    return _policy(charger.model, str(charger.firmware), charger.produced)


@functools.lru_cache(maxsize=1024)
def _policy(model: str, firmware: str, produced: dt.date) -> PinPolicy:
    """`pin_policy`, once per model, firmware text and production date: a listing decides it
    for hundreds of chargers of a few kinds. Keyed by the firmware's text, not its value, since
    the reason quotes it as written (6.11 and 6.11.0 are equal versions, not equal words)."""
    return pin_policy(model, FirmwareVersion.parse(firmware), produced)


def shows_pin(charger: Charger) -> bool:
    """Whether Charger Info includes a PIN: only when the charger uses one."""
    return charger.pin_enabled and policy_of(charger).mode is not PinMode.UNSUPPORTED


@dataclass(frozen=True)
class ChargerView:
    """Charger Info as a member sees it (PRODUCT.md); `pin` only when the charger uses one."""

    serial: str
    model: str
    firmware: FirmwareVersion
    role: str
    policy: PinPolicy
    pin_enabled: bool
    epoch: int
    pin: Pin | None = field(repr=False)
    message: str


AUDIT_INSERT = insert(PinReveal.__table__)  # type: ignore[arg-type]
"""Built once: a Core INSERT of the table, no ORM unit of work and no statement building."""
AUDIT_COLUMNS = ("charger_id", "user_id", "epoch", "generation", "app_version", "at")
"""The columns `audit_row` fills (the INSERT compiled for a driver names these)."""


def audit_row(
    charger_id: int, user_id: int, epoch: int, generation: int, app_version: str, now: float
) -> dict[str, object]:
    """The audit row of one PIN reveal: who, which charger, which epoch and PIN generation,
    which app, when."""
    return {
        "charger_id": charger_id,
        "user_id": user_id,
        "epoch": epoch,
        "generation": generation,
        "app_version": app_version,
        "at": moment(now),
    }


def audit_reveal(
    db: Session | Connection,
    charger_id: int,
    user_id: int,
    epoch: int,
    generation: int,
    app_version: str,
    now: float,
) -> None:
    """Write the audit row of one PIN reveal, in the same transaction as the answer.

    A plain INSERT, not the ORM's unit of work: this runs on every reveal (the hot path) and
    nothing reads the row back in the request.
    """
    db.execute(AUDIT_INSERT, audit_row(charger_id, user_id, epoch, generation, app_version, now))


def describe(charger: Labelled, role: str) -> ChargerView:
    """Charger Info without the PIN: what the web app shows before "Show PIN" is pressed."""
    policy = policy_of(charger)
    if policy.mode is PinMode.UNSUPPORTED:
        message = MESSAGE_UPDATE_CHARGER
    elif not charger.pin_enabled:
        message = MESSAGE_PIN_OFF
    else:
        message = ""
    return ChargerView(
        serial=charger.serial,
        model=charger.model,
        firmware=charger.firmware,
        role=role,
        policy=policy,
        pin_enabled=charger.pin_enabled,
        epoch=charger.epoch,
        pin=None,
        message=message,
    )


def reveal(
    db: Session, vault: Vault, charger: Charger, user: User, app_version: str, now: float
) -> Pin:
    """The PIN the charger uses now, audited (a PinReveal row in the caller's transaction);
    409 when it uses none (PIN off, or a firmware without one)."""
    if not shows_pin(charger):
        raise Conflict(f"no PIN to show: {describe(charger, '').message}", code="no_pin")
    pin = active_pin(vault, charger)
    audit_reveal(db, charger.id, user.id, charger.epoch, charger.generation, app_version, now)
    return pin


def charger_view(
    db: Session,
    vault: Vault,
    charger: Charger,
    role: str,
    user: User,
    app_version: str | None,
    now: float,
) -> ChargerView:
    """Charger Info; when it carries the PIN the reveal is audited (needs `app_version`)."""
    view = describe(charger, role)
    if not shows_pin(charger):
        return view
    if app_version is None:  # the router checks the version before asking for a PIN
        raise ValueError("a PIN reveal needs the app's version for the audit")
    return replace(view, pin=reveal(db, vault, charger, user, app_version, now))


@dataclass(frozen=True)
class EpochReveal:
    """What the PIN rules decided for one reveal: the PIN, and the audit row that must be
    committed before anyone sees it (the caller does the I/O: `pin_for_epoch` on a
    Session or Connection, the event loop's PostgreSQL connection in fleet/reveals.py)."""

    pin: Pin = field(repr=False)
    audit: dict[str, object]


def epoch_reveal(
    vault: Vault,
    charger: ChargerFacts,
    user_id: int,
    epoch: int,
    app_version: str,
    now: float,
) -> EpochReveal:
    """The PIN the charger uses in `epoch` (the troubleshooting screen) and its audit row.

    Only the epoch the charger attested (the committed one, issue 9): a member who harvested
    the PINs of epochs ahead would still know the charger's PIN after being revoked. After a
    wrong PIN the app relays the charger's new, attested state first (`reconcile`). The PIN is
    given even while it is off: a member enabling it may connect before the charger's receipt
    reaches us, and must not be stuck. No I/O here: the caller writes `audit` and answers only
    once it is committed.
    """
    policy = policy_of(charger)
    if policy.mode is PinMode.UNSUPPORTED:
        raise Conflict(f"this charger has no PIN: {policy.reason}")
    if epoch < charger.epoch:
        raise Unprocessable(
            f"epoch {epoch} is before the charger's epoch {charger.epoch}: a charger never goes "
            "back to an earlier epoch; read the epoch the charger advertises now",
            code="invalid_epoch",
        )
    if epoch > charger.epoch:
        # Only an epoch the charger attested: PINs of epochs ahead would outlive a revocation.
        raise Conflict(
            f"the charger has not shown epoch {epoch} yet (the fleet knows epoch "
            f"{charger.epoch}); relay its open info (POST /chargers/{charger.serial}/reconcile) "
            "and ask again",
            code="epoch_not_attested",
        )
    pin = active_pin(vault, charger)
    audit = audit_row(charger.id, user_id, epoch, charger.generation, app_version, now)
    return EpochReveal(pin, audit)


def pin_for_epoch(
    db: Session | Connection,
    vault: Vault,
    charger: ChargerFacts,
    user_id: int,
    epoch: int,
    app_version: str,
    now: float,
) -> Pin:
    """`epoch_reveal`, its audit row written in the caller's transaction (answer only after
    that transaction commits)."""
    decided = epoch_reveal(vault, charger, user_id, epoch, app_version, now)
    db.execute(AUDIT_INSERT, decided.audit)
    return decided.pin


@dataclass(frozen=True)
class ChargerOfMember:
    serial: str
    model: str
    role: str


class MemberCharger(Labelled, Protocol):
    """A charger of `memberships_of`: the columns `describe` reads and its id."""

    @property
    def id(self) -> int: ...


_MEMBER_CHARGERS = (
    select(
        Charger.id,
        Charger.serial,
        Charger.model,
        Charger.firmware,
        Charger.produced,
        Charger.pin_enabled,
        Charger.epoch,
        Membership.role,
    )
    .join(Membership, Membership.charger_id == Charger.id)
    .where(Membership.user_id == bindparam("user_id"), Membership.revoked_at.is_(None))
    .order_by(Charger.serial)
)
"""Built once: the listing reads columns, not ORM objects (an owner may have hundreds)."""


def memberships_of(db: Session, user: User) -> list[tuple[MemberCharger, str]]:
    """The chargers `user` is a live member of, by serial, each with the member's role."""
    rows = db.execute(_MEMBER_CHARGERS, {"user_id": user.id})
    return [(cast(MemberCharger, row), row.role) for row in rows]


def chargers_of(db: Session, user: User) -> list[ChargerOfMember]:
    """The chargers `user` is a live member of, by serial."""
    return [ChargerOfMember(c.serial, c.model, role) for c, role in memberships_of(db, user)]


@dataclass(frozen=True)
class Reveal:
    id: int
    email: str
    epoch: int
    app_version: str
    at: dt.datetime


def reveals_of(db: Session, charger: Charger, limit: int, before: int | None) -> list[Reveal]:
    """`limit` PIN reveals of `charger` below id `before` (all when None), newest first: the
    owner's audit list, paged by keyset so nobody can push a reveal out of reach (issue 9: a
    member revealed 1,000 times and only the newest 1,000 were shown)."""
    query = (
        select(PinReveal.id, User.email, PinReveal.epoch, PinReveal.app_version, PinReveal.at)
        .join(User, User.id == PinReveal.user_id)
        .where(PinReveal.charger_id == charger.id)
    )
    rows = db.execute(keyset_page(query, PinReveal.id, before, limit))
    return [Reveal(id_, email, epoch, ver, aware(at)) for id_, email, epoch, ver, at in rows]
