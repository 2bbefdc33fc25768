"""The PIN state of a charger, what each owner action does to it, and reconciliation.

One value (`PinState`: on or off, the epoch, the owner's custom PIN) and the rules that move
it, used by both ends: the charger persists what `apply` returns when it applies a ticket, and
the fleet predicts the same result when it issues that ticket (the *pending* state), then
commits it when the charger's receipt or open info shows it live (DESIGN.md, "Receipts and
reconciliation"). A rotation (a failed attempt in the hardened profile, or change_pin without
a custom PIN) moves to a later epoch and drops the custom PIN: `advanced_to` is that rule.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.errors import InvalidConfig
from chargepin.core.limits import check_generation
from chargepin.core.pin import Pin
from chargepin.core.tickets import Action


@dataclass(frozen=True)
class PinState:
    """What decides the PIN a charger pairs with."""

    enabled: bool
    epoch: int
    custom_pin: Pin | None = None
    generation: int = 0
    """The PIN sequence the epochs index (`epochs.epoch_pin`); a re-key moves to the next."""

    def live_pin(self, secret: bytes, serial: str) -> Pin:
        """The PIN pairing uses in this state: the custom PIN if set, else the epoch's PIN."""
        if self.custom_pin is not None:
            return self.custom_pin
        return epoch_pin(secret, serial, self.epoch, self.generation)

    def fingerprint(self, secret: bytes, serial: str) -> bytes:
        """The keyed fingerprint of the live PIN, as the charger publishes it."""
        return pin_fingerprint(secret, serial, self.live_pin(secret, serial))

    def advanced_to(self, epoch: int) -> PinState:
        """This state moved on to `epoch`: a later epoch drops the custom PIN (a rotation).

        The hardened profile rotates after every failed attempt because the attempt leaked
        bits of the PIN in use; a custom PIN that survived would keep the leak.
        """
        if epoch < self.epoch:
            raise InvalidConfig(
                f"epoch cannot go back from {self.epoch} to {epoch}; an old epoch's PIN may "
                "already be known"
            )
        if epoch == self.epoch:
            return self
        return replace(self, epoch=epoch, custom_pin=None)

    def rotated(self) -> PinState:
        """The next epoch's PIN, custom PIN dropped."""
        return self.advanced_to(self.epoch + 1)

    def rekeyed(self) -> PinState:
        """The next generation's PIN at this epoch, custom PIN dropped (DECISIONS.md, "Re-key").

        Every PIN of the old generation, past or future, says nothing about the new one: what
        a revoked member harvested is worthless. On or off stays as it was.
        """
        return replace(self, generation=check_generation(self.generation + 1), custom_pin=None)


def apply(action: Action, args: Mapping[str, str], state: PinState) -> PinState:
    """The PIN state after the charger applies an authorised `action` with ticket `args`.

    Only the PIN actions change it (core.action_policy.authorize has checked the action is allowed):
    enable_pin turns on the epoch's PIN or the custom `pin`; change_pin sets the custom `pin`
    or, without one, moves to the next epoch; disable_pin turns the PIN off and keeps it;
    rekey moves to the next generation (`PinState.rekeyed`).
    """
    custom = args.get("pin")
    if action is Action.ENABLE_PIN:
        return replace(state, enabled=True, custom_pin=Pin.parse_strong(custom) if custom else None)
    if action is Action.CHANGE_PIN:
        if custom:
            return replace(state, enabled=True, custom_pin=Pin.parse_strong(custom))
        return replace(state.rotated(), enabled=True)
    if action is Action.DISABLE_PIN:
        return replace(state, enabled=False)
    if action is Action.REKEY:
        return state.rekeyed()
    return state


PIN_ACTIONS = frozenset({Action.ENABLE_PIN, Action.CHANGE_PIN, Action.DISABLE_PIN, Action.REKEY})
"""The actions `apply` changes the PIN state for: their tickets leave a pending change behind."""


# ------------------------------------------------------------------------- reconciliation

Live = Literal["committed", "pending", "unknown"]


@dataclass(frozen=True)
class Observed:
    """The charger's state as it published it (open info) or signed it (a receipt)."""

    epoch: int
    fingerprint: bytes
    pin_enabled: bool
    signed: bool = False
    generation: int = 0


@dataclass(frozen=True)
class Reconciled:
    """Which of the fleet's states the charger shows, and the fleet's states afterwards."""

    live: Live
    committed: PinState
    pending: PinState | None


def shows(secret: bytes, serial: str, target: PinState, seen: Observed) -> bool:
    """Whether the charger shows `target`: same on/off and generation, the live PIN's fingerprint.

    A derived PIN matches from the target's epoch on (the charger may have rotated since).
    """
    if (
        seen.pin_enabled != target.enabled
        or seen.epoch < target.epoch
        or seen.generation != target.generation
    ):
        return False
    at_seen = target if target.custom_pin is not None else replace(target, epoch=seen.epoch)
    return hmac.compare_digest(at_seen.fingerprint(secret, serial), seen.fingerprint)


def reconcile(
    secret: bytes,
    serial: str,
    seen: Observed,
    committed: PinState,
    pending: PinState | None,
) -> Reconciled:
    """Match what the charger shows against the committed and the pending state.

    Epochs only move forward. A pending change whose receipt never arrived is committed when
    the charger shows it live; a newer epoch whose derived PIN matches is taken over (the
    charger rotated after failed attempts). Open info is unauthenticated, so its on/off flag
    alone never changes the committed state; a receipt's (`seen.signed`) does.
    """
    # Pending first: when both match (a new epoch's PIN, seen after later rotations) the change
    # was applied or overtaken, and committing it is right either way.
    if pending is not None:
        for applied in (pending, pending.advanced_to(max(pending.epoch, seen.epoch))):
            # The second: applied, then rotated after failed attempts (custom PIN gone).
            if shows(secret, serial, applied, seen):
                epoch = max(committed.epoch, seen.epoch, applied.epoch)
                return Reconciled("pending", replace(applied, epoch=epoch), None)
    if shows(secret, serial, committed, seen):
        return Reconciled(
            "committed", replace(committed, epoch=max(committed.epoch, seen.epoch)), pending
        )
    if seen.epoch > committed.epoch:
        enabled = seen.pin_enabled if seen.signed else committed.enabled
        rotated = replace(committed, enabled=enabled).advanced_to(seen.epoch)
        if shows(secret, serial, rotated, seen):
            return Reconciled("committed", rotated, pending)
    return Reconciled("unknown", committed, pending)


def commit_receipt(committed: PinState, pending: PinState, receipt: Observed) -> PinState:
    """The committed state once the charger's receipt confirms the pending change.

    The receipt says the epoch the change was applied in and the on/off it left; if the fleet
    has since seen the charger in a later epoch, it rotated after applying (custom PIN gone).
    """
    applied = PinState(receipt.pin_enabled, receipt.epoch, pending.custom_pin, receipt.generation)
    return applied.advanced_to(max(committed.epoch, receipt.epoch))
