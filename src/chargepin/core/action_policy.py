"""Which owner actions a charger accepts in its current PIN class and state.

A valid ticket proves the fleet service authorised the owner; this module decides whether the
charger's firmware class allows the action at all (PRODUCT.md: changing needs firmware 6.11 or
a mandatory model; only the optional class can switch the PIN off).
"""

from __future__ import annotations

from chargepin.core.errors import ChargepinError
from chargepin.core.policy import PinMode, PinPolicy
from chargepin.core.tickets import Action


class ActionNotAllowed(ChargepinError):
    """An authorised action that this charger's PIN class or state does not allow."""

    def __init__(self, action: Action, reason: str) -> None:
        super().__init__(f"{action.value} not allowed: {reason}")
        self.action = action
        self.reason = reason


def authorize(policy: PinPolicy, pin_enabled: bool, action: Action) -> None:
    """Raise ActionNotAllowed unless `action` makes sense for this charger now."""
    if policy.mode is PinMode.UNSUPPORTED and action in (
        Action.ENABLE_PIN,
        Action.CHANGE_PIN,
        Action.DISABLE_PIN,
        Action.REKEY,
    ):
        raise ActionNotAllowed(action, policy.reason)
    # A re-key is allowed on every charger with a PIN, on or off, whatever its firmware: the
    # owner chooses nothing (the derived sequence moves on, as a hardened charger's does after a
    # failed attempt), and revoking a member must work everywhere (DECISIONS.md, "Re-key").
    if action is Action.ENABLE_PIN and pin_enabled:
        raise ActionNotAllowed(action, "the PIN is already on; use change_pin to set another")
    if action is Action.CHANGE_PIN:
        if not policy.changeable:
            raise ActionNotAllowed(
                action, "changing the PIN needs firmware 6.11 or higher; update the charger"
            )
        if not pin_enabled:
            raise ActionNotAllowed(action, "the PIN is off; enable it first")
    if action is Action.DISABLE_PIN:
        if not policy.can_disable:
            raise ActionNotAllowed(action, f"the PIN cannot be switched off: {policy.reason}")
        if not pin_enabled:
            raise ActionNotAllowed(action, "the PIN is already off")
