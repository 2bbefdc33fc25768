"""What the charger does with a pairing request and with a failed PIN attempt: the one place.

The daemon's SMP hooks ask `gate()` before serving a pairing request and report every attempt
that did not end in a bond to `failed_attempt()`; both return decisions, and the daemon persists
the new state before it serves anything else (DESIGN.md, "Lockout" and "PIN epochs").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chargepin.core import lockout
from chargepin.core.lockout import LockoutState
from chargepin.core.pin_state import PinState
from chargepin.core.profiles import SecurityProfile

# Core spec Vol 3 Part H 3.4: the SMP timeout. Bumble does not run it (notes/bumble.md), so the
# daemon does: a phone that stops answering mid-pairing is an aborted attempt, not a busy charger.
SMP_TIMEOUT = 30.0


class Refusal(enum.Enum):
    """Why a pairing request is refused before any passkey round is run."""

    LOCKED = "locked"  # SMP 0x09 Repeated Attempts, link dropped
    BUSY = "busy"  # another pairing is running; counted as a failed attempt
    NEEDS_PASSKEY = "needs_passkey"  # SMP 0x03: Just Works or legacy pairing while the PIN is on


class AttemptKind(enum.Enum):
    """How an attempt that produced no bond ended."""

    WRONG_PIN = "wrong_pin"
    CANCELLED = "cancelled"
    ABORTED = "aborted"  # disconnected or timed out in the middle of passkey entry
    BUSY = "busy"
    FAILED = "failed"  # any other SMP failure after the exchange started


@dataclass(frozen=True)
class PairingRequest:
    """The parts of an SMP Pairing Request that the gate looks at."""

    secure_connections: bool
    can_enter_passkey: bool  # initiator IO capability is KeyboardOnly or KeyboardDisplay


def gate(
    profile: SecurityProfile,
    state: LockoutState,
    *,
    pin_enabled: bool,
    another_pairing_running: bool,
    request: PairingRequest,
    now: float,
    admitted: bool = False,
) -> Refusal | None:
    """Serve this pairing request, or refuse it and say why. Lockout wins over everything,
    except on a link a member's ticket admitted (Action.ADMIT_PAIRING): the lock keeps out the
    guessers, not the people the owner let in. Its attempts still count like any other."""
    if not admitted and not lockout.check(profile.lockout, state, now).allowed:
        return Refusal.LOCKED
    if another_pairing_running:
        return Refusal.BUSY
    if pin_enabled and not (request.secure_connections and request.can_enter_passkey):
        # Legacy passkey pairing is cracked offline from one sniffed exchange, and Just Works
        # has no MITM protection: with the PIN on, only LE Secure Connections passkey entry.
        return Refusal.NEEDS_PASSKEY
    return None


def counts_as_failure(kind: AttemptKind | Refusal) -> bool:
    """Every attempt that ran or blocked a pairing counts; a Just Works refusal guessed nothing."""
    return kind is not Refusal.NEEDS_PASSKEY and kind is not Refusal.LOCKED


def rotates_pin(profile: SecurityProfile, kind: AttemptKind, pin: PinState) -> bool:
    """Hardened: an attempt that ran passkey rounds leaked bits, so its PIN must not be reused.

    A busy refusal ran no round (and rotating would break the pairing that is running); with
    the PIN off no passkey was entered at all.
    """
    return profile.rotate_on_failure and kind is not AttemptKind.BUSY and pin.enabled


@dataclass(frozen=True)
class FailureOutcome:
    """The state after a failed attempt, to persist before serving the next one."""

    lockout: LockoutState
    pin: PinState
    locked_now: bool
    retry_after: float


def failed_attempt(
    profile: SecurityProfile, state: LockoutState, pin: PinState, kind: AttemptKind, now: float
) -> FailureOutcome:
    """Record one failed attempt: count it, maybe lock, maybe move to the next PIN epoch."""
    was_locked = lockout.is_locked(profile.lockout, state, now)
    new_state = lockout.record_failure(profile.lockout, state, now)
    locked = lockout.is_locked(profile.lockout, new_state, now)
    return FailureOutcome(
        lockout=new_state,
        pin=pin.rotated() if rotates_pin(profile, kind, pin) else pin,
        locked_now=locked and not was_locked,
        retry_after=lockout.retry_after(profile.lockout, new_state, now),
    )
