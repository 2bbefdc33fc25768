"""The lifecycle of a pairing attempt on one link, as a state machine: events in, actions out.

DESIGN.md, "Pairing" and "Lockout": every attempt that did not end in a bond is counted exactly
once, and before the charger's Pairing Failed PDU leaves (a charger killed between the two
gave an attacker a free attempt: `chargepin lab crash-loop` found it). Bumble reports the end
of an attempt through several callbacks that may come in any order or twice (our own failure
hook, Bumble's pairing_failure event, our SMP timer, the disconnection); here each is an event,
and the one table `TRANSITIONS` says what it does in each phase. The daemon feeds events and
carries out the actions in order, in the callback that produced the event.

In the style of h11's `_state.py`: named phases, a table of allowed transitions, and events the
table does not list for a phase are ignored (they come late, after the attempt was closed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from chargepin.core.attempts import AttemptKind, Refusal, counts_as_failure


class Phase(enum.Enum):
    """Where a link's pairing attempt stands."""

    IDLE = "idle"  # connected; no attempt running
    PAIRING = "pairing"  # a served Pairing Request: passkey rounds running, SMP timer on
    BONDED = "bonded"  # the attempt ended in a bond
    REFUSED = "refused"  # the request was refused before any round (counted if busy)
    COUNTED = "counted"  # the attempt failed and was counted; the link is being dropped
    GONE = "gone"  # disconnected: nothing more happens on this link


# ------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Requested:
    """A Pairing Request, with the gate's verdict (core.attempts.gate): None means serve it."""

    refusal: Refusal | None


@dataclass(frozen=True)
class Failed:
    """The pairing failed: our own Pairing Failed about to leave, or the phone's arrived."""

    kind: AttemptKind


@dataclass(frozen=True)
class TimedOut:
    """The SMP timer (30 s, Core spec Vol 3 Part H 3.4) ran out."""


@dataclass(frozen=True)
class Paired:
    """Bumble reports a bond; `authenticated` when it was made with the passkey (MITM)."""

    authenticated: bool = True


@dataclass(frozen=True)
class Disconnected:
    """The link is gone."""


@dataclass(frozen=True)
class Admitted:
    """A member's admit_pairing ticket was applied on this link: it may pair during a lock."""


AttemptEvent = Requested | Failed | TimedOut | Paired | Disconnected | Admitted


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Count:
    """Count a failed attempt (lockout, and the epoch in the hardened profile), durably."""

    kind: AttemptKind


@dataclass(frozen=True)
class LogRefusal:
    """Log a refusal that is not counted (locked, or Just Works while the PIN is on)."""

    refusal: Refusal


@dataclass(frozen=True)
class Refuse:
    """Answer the Pairing Request with the SMP error of `refusal`."""

    refusal: Refusal


@dataclass(frozen=True)
class Serve:
    """Take the one pairing slot, start the SMP timer and let the pairing run."""


@dataclass(frozen=True)
class Release:
    """Give back the pairing slot and stop the SMP timer."""


@dataclass(frozen=True)
class LogSuccess:
    """Log the new bond, and how it was made."""

    authenticated: bool


class DropReason(enum.Enum):
    """Why the charger drops a link after an attempt (the HCI reason follows from it)."""

    FAILED = "failed"  # Bumble keeps the link after a failure and a second pairing hangs
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Drop:
    """Disconnect the link once the pending PDUs went out."""

    reason: DropReason


AttemptAction = Count | LogRefusal | Refuse | Serve | Release | LogSuccess | Drop


# ------------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class Attempt:
    """A link's pairing lifecycle: its phase, and whether a member's ticket admitted it."""

    phase: Phase = Phase.IDLE
    admitted: bool = False

    @property
    def pairing(self) -> bool:
        """An attempt is running (it holds the pairing slot and may not be evicted)."""
        return self.phase is Phase.PAIRING


Outcome = tuple[Attempt, tuple[AttemptAction, ...]]
"""The attempt after an event, and the actions to carry out in this order."""

Transition = Callable[[Attempt, AttemptEvent], Outcome]


def _request(attempt: Attempt, event: AttemptEvent) -> Outcome:
    assert isinstance(event, Requested)
    refusal = event.refusal
    if refusal is None:
        return replace(attempt, phase=Phase.PAIRING), (Serve(),)
    accounted: AttemptAction = (
        Count(AttemptKind.BUSY) if counts_as_failure(refusal) else LogRefusal(refusal)
    )
    return replace(attempt, phase=Phase.REFUSED), (accounted, Refuse(refusal))


def _request_while_pairing(attempt: Attempt, event: AttemptEvent) -> Outcome:
    """A second Pairing Request on a link whose attempt runs: that attempt is over (counted,
    aborted) and the request is refused as busy; Bumble cannot run two on one link."""
    return replace(attempt, phase=Phase.COUNTED), (
        Count(AttemptKind.ABORTED),
        Release(),
        Refuse(Refusal.BUSY),
    )


def _fail(attempt: Attempt, event: AttemptEvent) -> Outcome:
    assert isinstance(event, Failed)
    release: tuple[AttemptAction, ...] = (Release(),) if attempt.pairing else ()
    return replace(attempt, phase=Phase.COUNTED), (
        Count(event.kind),
        *release,
        Drop(DropReason.FAILED),
    )


def _time_out(attempt: Attempt, event: AttemptEvent) -> Outcome:
    return replace(attempt, phase=Phase.COUNTED), (
        Count(AttemptKind.ABORTED),
        Release(),
        Drop(DropReason.TIMED_OUT),
    )


def _abort(attempt: Attempt, event: AttemptEvent) -> Outcome:
    return replace(attempt, phase=Phase.GONE), (Count(AttemptKind.ABORTED), Release())


def _bond(attempt: Attempt, event: AttemptEvent) -> Outcome:
    assert isinstance(event, Paired)
    release: tuple[AttemptAction, ...] = (Release(),) if attempt.pairing else ()
    return replace(attempt, phase=Phase.BONDED), (*release, LogSuccess(event.authenticated))


def _admit(attempt: Attempt, event: AttemptEvent) -> Outcome:
    return replace(attempt, admitted=True), ()


def _leave(attempt: Attempt, event: AttemptEvent) -> Outcome:
    return replace(attempt, phase=Phase.GONE), ()


_OPEN: Mapping[type, Transition] = {
    Requested: _request,
    Admitted: _admit,
    Disconnected: _leave,
}
"""A link with no attempt running: a new request starts one (even after an earlier attempt
ended on this link; the daemon drops such links, a request may still arrive first)."""

TRANSITIONS: Mapping[Phase, Mapping[type, Transition]] = MappingProxyType(
    {
        # A failure or bond with no served request: count it (a failure we did not see start
        # must never go uncounted); a bond is logged.
        Phase.IDLE: {**_OPEN, Failed: _fail, Paired: _bond},
        Phase.PAIRING: {
            Requested: _request_while_pairing,
            Failed: _fail,
            TimedOut: _time_out,
            Paired: _bond,
            Disconnected: _abort,
            Admitted: _admit,
        },
        Phase.BONDED: dict(_OPEN),
        Phase.REFUSED: dict(_OPEN),  # the refusal was accounted; Bumble's failure event is late
        Phase.COUNTED: dict(_OPEN),  # counted once; later failure, timer, bond events are late
        Phase.GONE: {},
    }
)
"""Phase -> event type -> what happens. An event a phase does not list is ignored."""


def step(attempt: Attempt, event: AttemptEvent) -> Outcome:
    """The attempt after `event`, and the actions to carry out in this order."""
    transition = TRANSITIONS[attempt.phase].get(type(event))
    if transition is None:
        return attempt, ()
    return transition(attempt, event)
