"""What the charger tells its CSMS about its security log: OCPP SecurityEventNotification.

One table maps each `EventKind` to an OCPP 2.0.1 security event type (a standard one where one
fits, Appendix 1; else a vendor type under our reverse-DNS id). The rest decides how events
wait in the charger's durable queue: identical failures within `STORM_WINDOW` are one queued
event with a count (A00.FR.316: report repeated failures once, not a flood), the queue holds at
most `MAX_QUEUE` events and what it cannot hold becomes one summary event saying how many were
dropped. techInfo is compact JSON bounded to 255 characters. No I/O: the store persists what
this decides and the station sends it (docs/OCPP.md).
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from chargepin.core.events import EventKind

VENDOR_ID: Final = "org.chargepin"
"""Our reverse-DNS vendor id: vendor event types, customData, DataTransfer."""

TECH_INFO_MAX: Final = 255
"""SecurityEventNotificationRequest.techInfo: string of at most 255 characters."""

TYPE_MAX: Final = 50
"""SecurityEventNotificationRequest.type: string of at most 50 characters."""

STORM_WINDOW: Final = 60.0
"""Seconds during which identical failures are one queued event (from the first of them)."""

MAX_QUEUE: Final = 1000
"""Events waiting for the CSMS at most; beyond it, events are counted in a summary event."""


class SecurityEventType(enum.StrEnum):
    """The types the charger sends (standard names of OCPP 2.0.1 Appendix 1, or vendor ones)."""

    STARTUP = "StartupOfTheDevice"
    RESET = "ResetOrReboot"
    LOGIN_FAILED = "MaintenanceLoginFailed"
    LOGIN_ACCEPTED = "MaintenanceLoginAccepted"
    RECONFIGURATION = "ReconfigurationOfSecurityParameters"
    REPLAY = "AttemptedReplayAttacks"
    INVALID_MESSAGES = "InvalidMessages"
    PIN_LOCKOUT = f"{VENDOR_ID}.PinLockout"
    PHONE_REMOVED = f"{VENDOR_ID}.PhoneRemoved"
    EVENTS_DROPPED = f"{VENDOR_ID}.EventsDropped"
    """Ours: how many events the full queue could not hold (techInfo `dropped`, first, last)."""


REPLAY_REASONS: Final = frozenset({"challenge"})
"""Ticket refusals that are a replay: a ticket whose single-use challenge is spent or unknown."""

INVALID_REASONS: Final = frozenset({"malformed", "tampered", "foreign"})
"""Ticket refusals that are a malformed or forged message (not an honest user's mistake)."""


class Origin(enum.StrEnum):
    """Which way the event's cause reached the charger (techInfo `origin`)."""

    BLE = "ble"
    OCPP = "ocpp"
    DEVICE = "device"


@dataclass(frozen=True)
class EventFacts:
    """What the recorder of an event knows beyond its kind and detail line."""

    origin: Origin = Origin.BLE
    phone: str | None = None
    """The phone's Bluetooth address (identity address where known)."""
    reason: str | None = None
    """Why it failed: the attempt kind, or the ticket refusal's reason code."""
    duration: int | None = None
    """A lockout's length in seconds."""
    failures: int | None = None
    """How many wrong PINs made the lockout."""
    with_pin: bool = False
    """A pairing made with the PIN (passkey entry), not Just Works."""


@dataclass(frozen=True)
class SecurityEvent:
    """One security event to queue: its type, techInfo fields and storm key."""

    type: SecurityEventType
    info: Mapping[str, str | int] = field(default_factory=dict)
    storm_key: str | None = None
    """Events with the same key within STORM_WINDOW are one queued event; None: never merged."""


def security_event(kind: EventKind, facts: EventFacts, epoch: int) -> SecurityEvent | None:
    """The security event `kind` reports to the CSMS, or None when the CSMS is not told.

    Not told: refused pairings (never served, not counted), admitted links, dropped idle links,
    Just Works pairings, and ticket refusals an honest user makes (expired, not allowed).
    """
    info: dict[str, str | int] = {"origin": facts.origin.value}
    if facts.phone is not None:
        info["phone"] = facts.phone
    if kind is EventKind.PAIRING_FAILED:
        if facts.reason is not None:
            info["reason"] = facts.reason
        info["epoch"] = epoch
        key = _key(SecurityEventType.LOGIN_FAILED, facts)
        return SecurityEvent(SecurityEventType.LOGIN_FAILED, info, key)
    if kind is EventKind.PAIRING_OK:
        if not facts.with_pin:
            return None
        info["epoch"] = epoch
        return SecurityEvent(SecurityEventType.LOGIN_ACCEPTED, info)
    if kind in _RECONFIGURATIONS:
        info["change"] = kind.value
        info["epoch"] = epoch
        return SecurityEvent(SecurityEventType.RECONFIGURATION, info)
    if kind is EventKind.TICKET_REJECTED:
        if facts.reason in REPLAY_REASONS:
            kind_type = SecurityEventType.REPLAY
        elif facts.reason in INVALID_REASONS:
            kind_type = SecurityEventType.INVALID_MESSAGES
        else:
            return None
        info["reason"] = str(facts.reason)
        return SecurityEvent(kind_type, info, _key(kind_type, facts))
    if kind is EventKind.LOCKED:
        if facts.duration is not None:
            info["duration"] = facts.duration
        if facts.failures is not None:
            info["failures"] = facts.failures
        info["epoch"] = epoch
        return SecurityEvent(SecurityEventType.PIN_LOCKOUT, info)
    if kind is EventKind.BOND_REMOVED:
        return SecurityEvent(SecurityEventType.PHONE_REMOVED, info)
    return None


_RECONFIGURATIONS: Final = frozenset(
    {EventKind.PIN_ENABLED, EventKind.PIN_CHANGED, EventKind.PIN_DISABLED, EventKind.PIN_REKEYED}
)


def startup_event(epoch: int, firmware: str) -> SecurityEvent:
    """The daemon started (StartupOfTheDevice, a critical event)."""
    return SecurityEvent(
        SecurityEventType.STARTUP,
        {"origin": Origin.DEVICE.value, "firmware": firmware, "epoch": epoch},
    )


def reset_event(epoch: int, reset_type: str) -> SecurityEvent:
    """The CSMS reset the charger (ResetOrReboot, a critical event), queued as it goes down."""
    return SecurityEvent(
        SecurityEventType.RESET,
        {"origin": Origin.OCPP.value, "reset": reset_type, "epoch": epoch},
    )


def _key(kind: SecurityEventType, facts: EventFacts) -> str:
    return json.dumps(
        [kind.value, facts.origin.value, facts.phone, facts.reason], separators=(",", ":")
    )


class Placement(enum.Enum):
    """Where a new event goes in the queue."""

    APPEND = "append"
    MERGE = "merge"
    """Counted in the last queued event (same storm key, within the window, not being sent)."""
    DROP = "drop"
    """The queue is full: counted in the summary event at its end."""


@dataclass(frozen=True)
class QueueTail:
    """The last queued event, as the placement rule sees it."""

    type: str
    storm_key: str | None
    first_at: float
    in_flight: bool
    """The station has sent it and waits for the answer: a merge would be lost with it."""


def place(event: SecurityEvent, now: float, length: int, tail: QueueTail | None) -> Placement:
    """Where `event`, happening at `now`, goes in a queue of `length` events ending in `tail`."""
    if (
        tail is not None
        and not tail.in_flight
        and event.storm_key is not None
        and tail.storm_key == event.storm_key
        and 0 <= now - tail.first_at <= STORM_WINDOW
    ):
        return Placement.MERGE
    if length >= MAX_QUEUE:
        return Placement.DROP
    return Placement.APPEND


def dropped_summary() -> SecurityEvent:
    """The event standing for what a full queue could not hold (its count says how many)."""
    return SecurityEvent(SecurityEventType.EVENTS_DROPPED, {"origin": Origin.DEVICE.value})


def tech_info(info: Mapping[str, str | int], count: int, first_at: float, type_: str) -> str:
    """techInfo as sent: compact JSON, with the count of merged events, at most 255 characters.

    A merged event says how many it stands for (`count`) and since when (`since`); the
    summary of dropped events says `dropped`. Fields are dropped from the end (never the count)
    if a long value would pass the bound.
    """
    fields: dict[str, str | int] = dict(info)
    extra: dict[str, str | int] = {}
    if type_ == SecurityEventType.EVENTS_DROPPED:
        extra["dropped"] = count
        extra["since"] = timestamp(first_at)
    elif count > 1:
        extra["count"] = count
        extra["since"] = timestamp(first_at)
    while True:
        text = json.dumps({**fields, **extra}, separators=(",", ":"), ensure_ascii=True)
        if len(text) <= TECH_INFO_MAX:
            return text
        if fields:
            fields.popitem()
        else:
            extra.pop("since", None)
            text = json.dumps(extra, separators=(",", ":"))
            return text[:TECH_INFO_MAX]


def event_id(serial: str, queue_id: int) -> str:
    """The event's identifier in customData: the same on every resend, unique per charger."""
    return f"{serial}:{queue_id}"


def custom_data(serial: str, queue_id: int) -> dict[str, str]:
    """SecurityEventNotification customData: our vendor id and the event's identifier."""
    return {"vendorId": VENDOR_ID, "eventId": event_id(serial, queue_id)}


def timestamp(at: float) -> str:
    """Unix seconds as OCPP's date-time: ISO 8601 in UTC, millisecond precision, `Z`; a
    ValueError for a time no calendar date carries (a damaged state file's)."""
    try:
        moment = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    except (OverflowError, OSError) as error:  # OSError: EOVERFLOW from the platform's time_t
        raise ValueError(f"{at!r} is not a time OCPP can carry: {error}") from error
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
