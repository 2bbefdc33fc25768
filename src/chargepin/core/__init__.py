"""The rules of chargepin, free of I/O: PINs, PIN policy, lockout, epochs, tickets, receipts.

Adapters (charger, phone, fleet, lab) import from here; time always comes in as an argument.
"""

from __future__ import annotations

from chargepin.core import errors
from chargepin.core.action_policy import ActionNotAllowed, authorize
from chargepin.core.addresses import random_static_address
from chargepin.core.attempts import AttemptKind, Refusal, failed_attempt, gate
from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.keys import derive_key, new_secret
from chargepin.core.lockout import (
    Decision,
    LockoutConfig,
    LockoutScope,
    LockoutState,
    check,
    check_connection,
    is_locked,
    record_failure,
    retry_after,
)
from chargepin.core.pin import Pin, generate_pin, weakness
from chargepin.core.policy import (
    FirmwareVersion,
    PinMode,
    PinPolicy,
    offers_pin_setup,
    pin_policy,
)
from chargepin.core.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    ProfileName,
    SecurityProfile,
    profile_name,
    security_profile,
)
from chargepin.core.tickets import (
    Action,
    Receipt,
    Ticket,
    issue_ticket,
    open_ticket,
    seal_ticket,
    sign_receipt,
    verify_receipt,
)

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "Action",
    "ActionNotAllowed",
    "AttemptKind",
    "Decision",
    "FirmwareVersion",
    "LockoutConfig",
    "LockoutScope",
    "LockoutState",
    "Pin",
    "PinMode",
    "PinPolicy",
    "ProfileName",
    "Receipt",
    "Refusal",
    "SecurityProfile",
    "Ticket",
    "authorize",
    "check",
    "check_connection",
    "derive_key",
    "epoch_pin",
    "errors",
    "failed_attempt",
    "gate",
    "generate_pin",
    "is_locked",
    "issue_ticket",
    "new_secret",
    "offers_pin_setup",
    "open_ticket",
    "pin_fingerprint",
    "pin_policy",
    "profile_name",
    "random_static_address",
    "record_failure",
    "retry_after",
    "seal_ticket",
    "security_profile",
    "sign_receipt",
    "verify_receipt",
    "weakness",
]
