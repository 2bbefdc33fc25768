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
from typing import Any

from sqlalchemy.orm import Session

from chargepin.core import pin_state
from chargepin.core.action_policy import ActionNotAllowed, authorize
from chargepin.core.attestation import AttestationInvalid, AttestedState, verify
from chargepin.core.errors import InvalidConfig, ReceiptInvalid, WeakPin
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PIN_ACTIONS, Live, Observed, PinState, commit_receipt
from chargepin.core.policy import PinMode, knows_op, pin_policy
from chargepin.core.tickets import (
    OP,
    Action,
    check_args,
    issue_ticket,
    seal_ticket,
    verify_receipt,
)
from chargepin.fleet import pins
from chargepin.fleet.access import OWNER, require_member
from chargepin.fleet.errors import Conflict, Forbidden, Unprocessable
from chargepin.fleet.models import Charger, User
from chargepin.fleet.vault import Vault

OWNER_ACTIONS = frozenset(
    {Action.ENABLE_PIN, Action.CHANGE_PIN, Action.DISABLE_PIN, Action.REMOVE_PHONE, Action.REKEY}
)
"""PRODUCT.md: enabling, changing, disabling the PIN and removing phones is the owner's; so is
re-keying (DECISIONS.md, "Re-key")."""


@dataclass(frozen=True)
class IssuedTicket:
    blob: bytes
    expires_at: dt.datetime


@dataclass(frozen=True)
class FleetPinState:
    """The committed PIN state and which of the fleet's states the charger was seen in."""

    pin_enabled: bool
    epoch: int
    live: Live = "committed"
    generation: int = 0


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
    return seal_for_charger(db, vault, charger, challenge, action, args, now)


def seal_for_charger(
    db: Session,
    vault: Vault,
    charger: Charger,
    challenge: bytes,
    action: Action,
    args: Mapping[str, str],
    now: float,
    op: str | None = None,
) -> IssuedTicket:
    """The ticket for `action` on `charger`, once its PIN class allows it; the change recorded
    as pending. The one sealing path, whoever carries the ticket: a phone over Bluetooth
    (`request_ticket`, after the caller's role) or the CSMS over OCPP (fleet/csms/outbox.py),
    which passes its command's `op` (the ticket carries it when the charger's firmware knows
    it: core.policy.knows_op; the charger then applies the command once).
    """
    serial = charger.serial
    policy = pin_policy(charger.model, charger.firmware, charger.produced)
    try:
        authorize(policy, charger.pin_enabled, action)
    except ActionNotAllowed as error:
        raise Conflict(str(error), code="action_not_allowed") from None
    chosen = _chosen(action, args)
    carried = chosen if op is None or not knows_op(charger.firmware) else {**chosen, OP: op}
    try:
        ticket = issue_ticket(serial, challenge, action, carried, now)
    except InvalidConfig as error:
        raise Unprocessable(str(error), code="invalid_ticket_args") from None
    blob = seal_ticket(pins.charger_secret(vault, charger), ticket)
    if action in PIN_ACTIONS:
        charger = _locked(db, charger)
        # What the charger will do with this ticket: the same rule it applies (core.pin_state).
        target = pin_state.apply(action, chosen, pins.committed_state(vault, charger))
        charger.pending = {
            "challenge": challenge.hex(),
            "action": action.value,
            "pin_enabled": target.enabled,
            "epoch": target.epoch,
            "generation": target.generation,
            "custom_pin_ct": _hex(_seal(vault, charger, target.custom_pin)),
            "issued_at": now,
        }
    return IssuedTicket(blob, dt.datetime.fromtimestamp(ticket.expires_at, dt.UTC))


def check_request(charger: Charger, action: Action, args: Mapping[str, str]) -> dict[str, str]:
    """What refuses an owner's action before any ticket exists, whoever asks (the JSON API's
    commands, the web app's Change PIN, Set up the passcode and Remove): a PIN class that never
    allows it (changing the PIN below firmware 6.11; enabling it where the class keeps it always
    on or has none: 409) and a weak or malformed chosen PIN (422, with the weak-PIN rule's
    reason) or arguments the action does not take (422, core.tickets.check_args).
    `seal_for_charger` applies the whole rule again when it seals the ticket: whether the PIN
    is on may change while a command waits. The arguments, as the ticket will carry them (a
    chosen PIN in its six-digit form), for the command to keep."""
    if action in (Action.CHANGE_PIN, Action.ENABLE_PIN):
        policy = pin_policy(charger.model, charger.firmware, charger.produced)
        # The class's part of the rule, which the sealing checks with the PIN as it is then:
        # changing taken with the PIN on; enabling refused where it can never become possible
        # while the command waits (no PIN in the firmware; a mandatory PIN that is on, which
        # nothing switches off), taken with the PIN off elsewhere (a disable_pin may be waiting).
        pin_on = action is Action.CHANGE_PIN or (
            policy.mode is PinMode.MANDATORY and charger.pin_enabled
        )
        try:
            authorize(policy, pin_on, action)
        except ActionNotAllowed as error:
            raise Conflict(str(error), code="action_not_allowed") from None
    chosen = _chosen(action, args)
    try:
        check_args(action, chosen)
    except InvalidConfig as error:
        raise Unprocessable(str(error), code="invalid_ticket_args") from None
    return {name: chosen[name] for name in args}


def _chosen(action: Action, args: Mapping[str, str]) -> dict[str, str]:
    """The ticket's arguments: change_pin with neither "pin" nor "next_epoch" means the fleet
    picks, the next epoch's PIN; a chosen PIN in its six-digit form, refused with the reason
    when weak or malformed."""
    if OP in args:
        raise Unprocessable(
            f"argument {OP} is the fleet's own (each queued command has one); leave it out",
            code="invalid_ticket_args",
        )
    chosen = dict(args)
    if action is Action.CHANGE_PIN and "pin" not in chosen and "next_epoch" not in chosen:
        chosen["next_epoch"] = "1"
    custom = _custom_pin(chosen.get("pin"))
    if custom is not None:
        chosen["pin"] = custom.digits
    return chosen


def submit_receipt(
    db: Session, vault: Vault, user: User, serial: str, blob: bytes
) -> FleetPinState:
    """Commit the pending change the charger's receipt confirms; nothing changes if it is forged.

    A receipt also carries the charger's state at that moment: a newer epoch whose derived PIN
    matches the fingerprint is taken over (the hardened profile rotates after failures).
    """
    charger, _member = require_member(db, user, serial)
    return commit_charger_receipt(db, vault, charger, blob)


def commit_charger_receipt(
    db: Session, vault: Vault, charger: Charger, blob: bytes
) -> FleetPinState:
    """Verify `blob` as `charger`'s receipt and commit what it confirms (ReceiptInvalid -> 422).

    The one commit path, whoever relays the receipt: a phone (`submit_receipt`) or the CSMS.
    """
    serial = charger.serial
    secret = pins.charger_secret(vault, charger)
    try:
        receipt = verify_receipt(secret, serial, blob)
    except ReceiptInvalid as error:
        raise Unprocessable(str(error), code="receipt_invalid") from None
    charger = _locked(db, charger)
    seen = Observed(
        receipt.epoch,
        receipt.fingerprint,
        receipt.pin_enabled,
        signed=True,
        generation=receipt.generation,
    )
    pending = _pending(vault, charger)
    answers_pending = (
        pending is not None
        and charger.pending is not None
        and hmac.compare_digest(str(charger.pending["challenge"]), receipt.challenge.hex())
        and charger.pending["action"] == receipt.action.value
    )
    if answers_pending and pending is not None and _shows_pending(secret, serial, pending, seen):
        _store(
            vault,
            charger,
            commit_receipt(pins.committed_state(vault, charger), pending, seen),
            None,
        )
        return _state(charger, "pending")
    live = _observe(vault, charger, secret, seen)
    if answers_pending:
        # The answer to the pending change's own ticket shows another PIN: the change was
        # applied before and overtaken since (a repeat, core/applied_ops.py). No receipt will
        # ever confirm it: the receipt's state is what stands.
        charger.pending = None
    return _state(charger, live)


def _shows_pending(secret: bytes, serial: str, pending: PinState, seen: Observed) -> bool:
    """Whether a receipt for the pending change's ticket shows that change's PIN. A first
    application always does; a repeat of a command applied before (its answer lost,
    core/applied_ops.py) is answered with the charger's state now, which a later change (a
    phone's ticket meanwhile) may have moved elsewhere: such a receipt is matched like any
    other signed state (`_observe`), never committed as the pending change."""
    applied = PinState(seen.pin_enabled, seen.epoch, pending.custom_pin, seen.generation)
    return hmac.compare_digest(applied.fingerprint(secret, serial), seen.fingerprint)


def reconcile(
    db: Session,
    vault: Vault,
    user: User,
    serial: str,
    state: AttestedState,
    attestation: bytes,
) -> FleetPinState:
    """Match the charger's attested state (its open info, relayed by a phone) against committed
    and pending. A pending change whose receipt never arrived is committed when the charger
    shows it live; a state the charger did not sign changes nothing (422)."""
    charger, _member = require_member(db, user, serial)
    secret = pins.charger_secret(vault, charger)
    try:
        verify(secret, serial, state, attestation)
    except AttestationInvalid as error:
        raise Unprocessable(str(error), code="attestation_invalid") from None
    return follow_proven(db, vault, charger, secret, state)


def follow_proven(
    db: Session, vault: Vault, charger: Charger, secret: bytes, state: AttestedState
) -> FleetPinState:
    """Match a state the charger proved (an attestation or a presence proof, both verified by
    the caller) against committed and pending, as `reconcile` does."""
    charger = _locked(db, charger)
    seen = Observed(
        state.epoch, state.fingerprint, state.pin_enabled, signed=True, generation=state.generation
    )
    return _state(charger, _observe(vault, charger, secret, seen))


# ------------------------------------------------------------------------------ internals
# The rules are core.pin_state's; these only move PIN states between it and the charger's row
# (committed columns, the `pending` JSON), the custom PIN sealed in the vault.


def _observe(vault: Vault, charger: Charger, secret: bytes, seen: Observed) -> Live:
    """Which state the charger is in, the fleet's states updated as core decides."""
    outcome = pin_state.reconcile(
        secret, charger.serial, seen, pins.committed_state(vault, charger), _pending(vault, charger)
    )
    if outcome.live != "unknown":
        _store(vault, charger, outcome.committed, outcome.pending)
    return outcome.live


def _pending_ct(charger: Charger) -> bytes | None:
    data: dict[str, Any] | None = charger.pending
    ct = data.get("custom_pin_ct") if data else None
    return bytes.fromhex(ct) if ct else None


def _hex(ct: bytes | None) -> str | None:
    return None if ct is None else ct.hex()


def _seal(vault: Vault, charger: Charger, pin: Pin | None) -> bytes | None:
    """The custom PIN sealed for the row; a PIN already sealed there keeps its ciphertext."""
    if pin is None:
        return None
    for ct in (charger.custom_pin_ct, _pending_ct(charger)):
        if ct is not None and pins.custom_pin(vault, charger, ct) == pin:
            return ct
    return vault.seal(pin.digits.encode(), pins.custom_pin_context(charger.serial))


def _pending(vault: Vault, charger: Charger) -> PinState | None:
    data: dict[str, Any] | None = charger.pending
    if not data:
        return None
    custom = pins.custom_pin(vault, charger, _pending_ct(charger))
    # A pending change written before re-keying existed has no generation: it kept the one
    # the charger was in, which a pending change never moved until then.
    generation = int(data.get("generation", charger.generation))
    return PinState(bool(data["pin_enabled"]), int(data["epoch"]), custom, generation)


def _store(vault: Vault, charger: Charger, committed: PinState, pending: PinState | None) -> None:
    """Write core's committed state on the row; drop the pending change once committed."""
    charger.custom_pin_ct = _seal(vault, charger, committed.custom_pin)
    charger.pin_enabled = committed.enabled
    charger.epoch = committed.epoch  # core never moves it back
    charger.generation = committed.generation  # nor this
    if pending is None:
        charger.pending = None


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


def _state(charger: Charger, live: Live) -> FleetPinState:
    return FleetPinState(charger.pin_enabled, charger.epoch, live, charger.generation)
