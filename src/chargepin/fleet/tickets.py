"""Tickets for owner actions, receipts that commit them, and reconciliation with the charger.

DESIGN.md, "Tickets" and "Receipts and reconciliation (nothing lost)": the fleet checks the
caller's role and the charger's PIN class, seals a ticket for one challenge with the charger's
secret, and records the change it authorised as *pending* next to the *committed* state. A
receipt signed by the charger commits it. When the receipt never arrives (crash, dropped link)
the keyed PIN fingerprint the charger publishes in its open info tells which PIN is live, so
the owner can always learn the PIN that works.

Issuing a new PIN-changing ticket replaces the pending change: the app reconciles first (it
reads the charger's open info before asking for a ticket anyway).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from chargepin.core.admin import ActionNotAllowed, authorize
from chargepin.core.errors import InvalidConfig, ReceiptInvalid, WeakPin
from chargepin.core.pin import Pin
from chargepin.core.policy import pin_policy
from chargepin.core.tickets import Action, Receipt, issue_ticket, seal_ticket, verify_receipt
from chargepin.fleet import pins
from chargepin.fleet.access import OWNER, require_member
from chargepin.fleet.errors import Conflict, Forbidden, Unprocessable
from chargepin.fleet.models import Charger, User
from chargepin.fleet.vault import Vault

OWNER_ACTIONS = frozenset(
    {Action.ENABLE_PIN, Action.CHANGE_PIN, Action.DISABLE_PIN, Action.REMOVE_PHONE}
)
"""PRODUCT.md: enabling, changing, disabling the PIN and removing phones is the owner's."""

PIN_ACTIONS = frozenset({Action.ENABLE_PIN, Action.CHANGE_PIN, Action.DISABLE_PIN})
"""Actions that change the PIN state: their ticket leaves a pending change behind."""

Live = Literal["committed", "pending", "unknown"]


@dataclass(frozen=True)
class IssuedTicket:
    blob: bytes
    expires_at: dt.datetime


@dataclass(frozen=True)
class PinState:
    """The committed PIN state and which of the fleet's states the charger was seen in."""

    pin_enabled: bool
    epoch: int
    live: Live = "committed"


@dataclass(frozen=True)
class _Target:
    """A PIN state: committed on the charger row or pending in `Charger.pending`."""

    pin_enabled: bool
    epoch: int
    custom_pin_ct: bytes | None


def request_ticket(
    db: Session,
    vault: Vault,
    user: User,
    serial: str,
    challenge: bytes,
    action: Action,
    args: Mapping[str, str],
    now: float,
) -> IssuedTicket:
    """A sealed ticket for `action` against the charger's `challenge`, if role and class allow.

    change_pin with neither "pin" nor "next_epoch" means the fleet picks: the next epoch's PIN.
    """
    charger, member = require_member(db, user, serial)
    if action in OWNER_ACTIONS and member.role != OWNER:
        raise Forbidden(f"only the charger's owner can {action.value.replace('_', ' ')}")
    policy = pin_policy(charger.model, charger.firmware, charger.produced)
    try:
        authorize(policy, charger.pin_enabled, action)
    except ActionNotAllowed as error:
        raise Conflict(str(error), code="action_not_allowed") from None
    chosen = dict(args)
    if action is Action.CHANGE_PIN and "pin" not in chosen and "next_epoch" not in chosen:
        chosen["next_epoch"] = "1"
    custom = _custom_pin(chosen.get("pin"))
    if custom is not None:
        chosen["pin"] = custom.digits
    try:
        ticket = issue_ticket(serial, challenge, action, chosen, now)
    except InvalidConfig as error:
        raise Unprocessable(str(error), code="invalid_ticket_args") from None
    blob = seal_ticket(pins.charger_secret(vault, charger), ticket)
    if action in PIN_ACTIONS:
        charger = _locked(db, charger)
        target = _target_of(vault, charger, action, custom, chosen)
        charger.pending = {
            "challenge": challenge.hex(),
            "action": action.value,
            "pin_enabled": target.pin_enabled,
            "epoch": target.epoch,
            "custom_pin_ct": None if target.custom_pin_ct is None else target.custom_pin_ct.hex(),
            "issued_at": now,
        }
    return IssuedTicket(blob, dt.datetime.fromtimestamp(ticket.expires_at, dt.UTC))


def submit_receipt(db: Session, vault: Vault, user: User, serial: str, blob: bytes) -> PinState:
    """Commit the pending change the charger's receipt confirms; nothing changes if it is forged.

    A receipt also carries the charger's state at that moment: a newer epoch whose derived PIN
    matches the fingerprint is taken over (the hardened profile rotates after failures).
    """
    charger, _member = require_member(db, user, serial)
    try:
        receipt = verify_receipt(pins.charger_secret(vault, charger), serial, blob)
    except ReceiptInvalid as error:
        raise Unprocessable(str(error), code="receipt_invalid") from None
    charger = _locked(db, charger)
    pending = _pending(charger)
    if (
        pending is not None
        and charger.pending is not None
        and hmac.compare_digest(str(charger.pending["challenge"]), receipt.challenge.hex())
        and charger.pending["action"] == receipt.action.value
    ):
        if charger.epoch > receipt.epoch:
            # Seen in a newer epoch since the charger signed this: it rotated after failed
            # attempts, and a rotation drops any custom PIN.
            pending = _Target(pending.pin_enabled, charger.epoch, None)
        else:
            pending = _Target(pending.pin_enabled, receipt.epoch, pending.custom_pin_ct)
        _commit(charger, pending, receipt.pin_enabled)
        return _state(charger, "pending")
    return _state(charger, _observe(vault, charger, _seen(receipt), signed=True))


def reconcile(
    db: Session,
    vault: Vault,
    user: User,
    serial: str,
    epoch: int,
    fingerprint: bytes,
    pin_enabled: bool,
) -> PinState:
    """Match what the phone read from the charger's open info against committed and pending.

    A pending change whose receipt never arrived is committed when the charger shows it live.
    """
    charger, _member = require_member(db, user, serial)
    charger = _locked(db, charger)
    seen = _Seen(epoch, fingerprint, pin_enabled)
    return _state(charger, _observe(vault, charger, seen, signed=False))


# ------------------------------------------------------------------------------ internals


@dataclass(frozen=True)
class _Seen:
    """The charger's state as it published it (open info) or signed it (receipt)."""

    epoch: int
    fingerprint: bytes
    pin_enabled: bool


def _seen(receipt: Receipt) -> _Seen:
    return _Seen(receipt.epoch, receipt.fingerprint, receipt.pin_enabled)


def _observe(vault: Vault, charger: Charger, seen: _Seen, *, signed: bool) -> Live:
    """Which state the charger is in; commits the pending one or a newer epoch when shown live.

    Epochs only move forward. Open info is unauthenticated, so its on/off flag alone never
    changes the committed state; a receipt's (`signed`) does.
    """
    # Pending first: when both match (a new epoch's PIN, seen after later rotations) the change
    # was applied or overtaken, and committing it is right either way.
    pending = _pending(charger)
    if pending is not None and _matches(vault, charger, pending, seen):
        epoch = max(seen.epoch, pending.epoch)
        _commit(charger, _Target(pending.pin_enabled, epoch, pending.custom_pin_ct))
        return "pending"
    committed = _Target(charger.pin_enabled, charger.epoch, charger.custom_pin_ct)
    if _matches(vault, charger, committed, seen):
        charger.epoch = max(charger.epoch, seen.epoch)
        return "committed"
    enabled = seen.pin_enabled if signed else charger.pin_enabled
    rotated = _Target(enabled, seen.epoch, None)
    if seen.epoch > charger.epoch and _matches(vault, charger, rotated, seen):
        # The charger moved on after failed attempts; a custom PIN does not survive that.
        charger.pin_enabled, charger.epoch, charger.custom_pin_ct = enabled, seen.epoch, None
        return "committed"
    return "unknown"


def _matches(vault: Vault, charger: Charger, target: _Target, seen: _Seen) -> bool:
    """Whether the charger shows `target`: same on/off, and the live PIN's fingerprint.

    A derived PIN matches from the target's epoch on (the charger may have rotated since).
    """
    if seen.pin_enabled != target.pin_enabled or seen.epoch < target.epoch:
        return False
    if target.custom_pin_ct is not None:
        digits = vault.open(target.custom_pin_ct, pins.custom_pin_context(charger.serial))
        pin = Pin(digits.decode())
    else:
        pin = pins.pin_of_epoch(vault, charger, seen.epoch)
    return hmac.compare_digest(pins.fingerprint(vault, charger, pin), seen.fingerprint)


def _commit(charger: Charger, target: _Target, pin_enabled: bool | None = None) -> None:
    """Commit `target` (with `pin_enabled` as a receipt signed it) and clear the pending change."""
    charger.pin_enabled = target.pin_enabled if pin_enabled is None else pin_enabled
    charger.epoch = max(charger.epoch, target.epoch)
    charger.custom_pin_ct = target.custom_pin_ct
    charger.pending = None


def _pending(charger: Charger) -> _Target | None:
    data: dict[str, Any] | None = charger.pending
    if not data:
        return None
    ct = data.get("custom_pin_ct")
    return _Target(bool(data["pin_enabled"]), int(data["epoch"]), bytes.fromhex(ct) if ct else None)


def _target_of(
    vault: Vault, charger: Charger, action: Action, custom: Pin | None, args: Mapping[str, str]
) -> _Target:
    """The state the charger will be in after applying the ticket (charger/admin.py)."""

    def sealed(pin: Pin) -> bytes:
        return vault.seal(pin.digits.encode(), pins.custom_pin_context(charger.serial))

    if action is Action.ENABLE_PIN:
        return _Target(True, charger.epoch, None if custom is None else sealed(custom))
    if action is Action.CHANGE_PIN:
        if custom is not None:
            return _Target(True, charger.epoch, sealed(custom))
        assert args.get("next_epoch") == "1"
        return _Target(True, charger.epoch + 1, None)
    return _Target(False, charger.epoch, charger.custom_pin_ct)  # DISABLE_PIN keeps its PIN


def _custom_pin(value: str | None) -> Pin | None:
    """The owner's chosen PIN, refused with the reason when weak or malformed."""
    if value is None:
        return None
    try:
        return Pin.parse_strong(value)
    except WeakPin as error:
        raise Unprocessable(str(error), code="weak_pin") from None
    except ValueError as error:
        raise Unprocessable(f"pin: {error}", code="invalid_ticket_args") from None


def _locked(db: Session, charger: Charger) -> Charger:
    """The charger row re-read under a row lock (PostgreSQL): one PIN change at a time."""
    row = db.get(Charger, charger.id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


def _state(charger: Charger, live: Live) -> PinState:
    return PinState(charger.pin_enabled, charger.epoch, live)
