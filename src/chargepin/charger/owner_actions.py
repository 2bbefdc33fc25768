"""Owner actions on the charger: open a ticket, check it is allowed, apply it, sign a receipt.

The GATT admin point hands the written bytes here; the daemon then does the link-level
consequences this returns (drop links, forget bonds). State changes go through the one store.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace

from chargepin.charger.store import StateStore
from chargepin.core import pin_state
from chargepin.core.action_policy import ActionNotAllowed, authorize
from chargepin.core.applied_ops import Decision, decide
from chargepin.core.errors import ChargepinError, InvalidConfig, TicketRejected
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts, Origin
from chargepin.core.pin_state import PIN_ACTIONS
from chargepin.core.policy import pin_policy
from chargepin.core.protocol import AdminResult
from chargepin.core.tickets import (
    OP,
    Action,
    Receipt,
    Ticket,
    check_args,
    open_ticket,
    sign_receipt,
)


@dataclass(frozen=True)
class AdminOutcome:
    """What the daemon shows the phone and what it must do to the links afterwards."""

    result: AdminResult
    drop_all_links: bool = False
    forget_unauthenticated_bonds: bool = False
    forget_bonds: tuple[str, ...] = ()
    forget_all_bonds: bool = False
    admit_link: bool = False


UNPAIRED_ACTIONS = frozenset({Action.ADMIT_PAIRING})
"""The only tickets a link that is not paired yet may apply (tickets carry their own proof)."""


class NeedsPairedLink(ChargepinError):
    """A valid ticket for an action that needs a paired link, written on one that is not."""

    def __init__(self, action: Action) -> None:
        super().__init__(f"{action.value} needs a paired link; pair with the PIN first")
        self.action = action


def _receipt(store: StateStore, ticket: Ticket, bonds_removed: int = 0) -> bytes:
    identity = store.identity
    state = store.pin_state
    return sign_receipt(
        store.secret,
        Receipt(
            serial=identity.serial,
            challenge=ticket.challenge,
            action=ticket.action,
            epoch=state.epoch,
            pin_enabled=state.enabled,
            fingerprint=state.fingerprint(store.secret, identity.serial),
            bonds_removed=bonds_removed,
            generation=state.generation,
        ),
    )


def rejected(reason: str, detail: str, action: str = "") -> AdminResult:
    """The result shown for a refused ticket."""
    return AdminResult(ok=False, action=action, reason=reason, detail=detail)


def apply_ticket(
    store: StateStore,
    blob: bytes,
    challenge: bytes | None,
    now: float,
    bonded: list[str],
    only: Collection[Action] | None = None,
    origin: Origin = Origin.BLE,
) -> AdminOutcome:
    """Open, authorise and apply one ticket; raises TicketRejected or ActionNotAllowed, and
    NeedsPairedLink (nothing applied) when its action is not among `only`.

    The state change, its events and the ticket's `op` (the fleet command it carries: a
    command applied before is answered with the current state and not applied again,
    core/applied_ops.py) commit in one transaction (the caller's, if it holds one: the daemon
    adds the bond removals to it). `origin` says which way the ticket came (the GATT admin
    point or OCPP DataTransfer) for the security events.
    """
    with store.transaction():
        return _apply(store, blob, challenge, now, bonded, only, EventFacts(origin=origin))


def _apply(
    store: StateStore,
    blob: bytes,
    challenge: bytes | None,
    now: float,
    bonded: list[str],
    only: Collection[Action] | None,
    facts: EventFacts,
) -> AdminOutcome:
    identity = store.identity
    ticket = open_ticket(store.secret, identity.serial, blob, now, challenge)
    if only is not None and ticket.action not in only:
        raise NeedsPairedLink(ticket.action)
    op = ticket.arg(OP)
    if decide(store.applied_ops, op) is Decision.ANSWER:
        # The fleet sent this command again (its first answer was lost): answer it with the
        # state as it is now, signed for this ticket's challenge; apply nothing, report nothing.
        return AdminOutcome(
            AdminResult(
                ok=True,
                action=ticket.action.value,
                receipt=_receipt(store, ticket),
                phones=tuple(bonded) if ticket.action is Action.LIST_PHONES else (),
            )
        )
    outcome = _carry_out(
        store,
        ticket.action,
        {name: value for name, value in ticket.args if name != OP},
        now,
        bonded,
        facts,
        lambda removed: _receipt(store, ticket, bonds_removed=removed),
    )
    store.record_op(op)  # in the caller's transaction, with the change it records
    return outcome


def apply_setting(
    store: StateStore,
    action: Action,
    args: Mapping[str, str],
    now: float,
    bonded: list[str],
    origin: Origin = Origin.OCPP,
) -> AdminOutcome:
    """Apply an owner action that arrived as a setting (OCPP SetVariables on BluetoothPin)
    with the ticket rules: the arguments checked as a ticket's, the PIN class and firmware
    (core.action_policy), the same state change and events. No receipt: the CSMS's own
    authenticated connection vouches for the request, and its answer is the confirmation."""
    try:
        checked = dict(check_args(action, args))
    except InvalidConfig as error:
        raise TicketRejected("bad_args", str(error)) from None
    with store.transaction():
        return _carry_out(
            store, action, checked, now, bonded, EventFacts(origin=origin), lambda _: b""
        )


def _carry_out(
    store: StateStore,
    action: Action,
    args: Mapping[str, str],
    now: float,
    bonded: list[str],
    facts: EventFacts,
    sign: Callable[[int], bytes],
) -> AdminOutcome:
    """Authorise and apply `action`; `sign(bonds_removed)` makes the receipt."""
    identity = store.identity
    policy = pin_policy(identity.model, identity.firmware, identity.produced)
    authorize(policy, store.pin_enabled, action)
    if action is Action.ADMIT_PAIRING:
        store.record_event(EventKind.PAIRING_ADMITTED, "member ticket", now, facts)
        return AdminOutcome(AdminResult(ok=True, action=action.value), admit_link=True)
    if action in PIN_ACTIONS:
        store.save_pin_state(pin_state.apply(action, dict(args), store.pin_state))
    if action is Action.ENABLE_PIN:
        store.record_event(EventKind.PIN_ENABLED, "owner ticket", now, facts)
        result = AdminResult(ok=True, action=action.value, receipt=sign(0))
        # PRODUCT.md: enabling interrupts the Bluetooth connection; the next one needs the PIN.
        return AdminOutcome(result, drop_all_links=True, forget_unauthenticated_bonds=True)
    if action is Action.CHANGE_PIN:
        forget = args.get("forget_bonds") == "1"
        store.record_event(
            EventKind.PIN_CHANGED, "forget all bonds" if forget else "bonds kept", now, facts
        )
        result = AdminResult(
            ok=True,
            action=action.value,
            receipt=sign(len(bonded) if forget else 0),
        )
        return AdminOutcome(result, drop_all_links=forget, forget_all_bonds=forget)
    if action is Action.DISABLE_PIN:
        store.record_event(EventKind.PIN_DISABLED, "owner ticket", now, facts)
        return AdminOutcome(AdminResult(ok=True, action=action.value, receipt=sign(0)))
    if action is Action.REKEY:
        store.record_event(EventKind.PIN_REKEYED, f"generation {store.generation}", now, facts)
        # Bonds stay: the owner removes a revoked member's phones with remove_phone tickets.
        return AdminOutcome(AdminResult(ok=True, action=action.value, receipt=sign(0)))
    if action is Action.LIST_PHONES:
        return AdminOutcome(AdminResult(ok=True, action=action.value, phones=tuple(bonded)))
    # REMOVE_PHONE
    if args.get("all") == "1":
        targets = tuple(bonded)
    else:
        address = args.get("address") or ""
        targets = tuple(a for a in bonded if a.split("/")[0] == address.split("/")[0].upper())
        if not targets:
            raise ActionNotAllowed(action, f"no paired phone {address}; list the phones first")
    for target in targets:
        store.record_event(
            EventKind.BOND_REMOVED, target, now, replace(facts, phone=target.split("/")[0])
        )
    return AdminOutcome(
        AdminResult(
            ok=True,
            action=action.value,
            receipt=sign(len(targets)),
            phones=targets,
        ),
        forget_bonds=targets,
    )


__all__ = [
    "ActionNotAllowed",
    "AdminOutcome",
    "TicketRejected",
    "apply_setting",
    "apply_ticket",
    "rejected",
]
