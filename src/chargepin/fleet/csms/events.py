"""The security events chargers send over OCPP: stored once each, shown to the owner in words.

A station resends an event until the CSMS answers (core.ocpp_events: at least once, with the
same customData.eventId), so the row is unique per charger and event id and a resend is
answered without a second row. The words are made when the owner reads them, from the stored
type and techInfo, so a better wording applies to old events too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargepin.core.limits import MAX_EPOCH
from chargepin.core.ocpp_events import TECH_INFO_MAX, TYPE_MAX, VENDOR_ID, SecurityEventType
from chargepin.fleet.access import require_owner
from chargepin.fleet.db import keyset_page
from chargepin.fleet.models import StationSecurityEvent, User
from chargepin.fleet.times import aware

_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}(?:/P)?", re.ASCII)
MAX_EVENT_ID = 64
"""customData.eventId: `<serial>:<queue id>`, a serial of at most 32 characters."""
MAX_SHOWN_SECONDS = 10 * 365 * 24 * 3600
"""A duration past ten years is not a lockout the charger could have meant: not shown."""


@dataclass(frozen=True)
class StationEventView:
    id: int
    type: str
    meaning: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    tech_info: str | None


def event_id_of(custom_data: Any) -> str | None:
    """customData.eventId when the station named its event with our vendor id, else None.

    The ocpp package hands handlers every key in snake_case, customData's own included
    (`vendor_id`, `event_id`); the wire's camelCase is read too, for any other caller.
    """
    if not isinstance(custom_data, dict):
        return None
    vendor = custom_data.get("vendor_id", custom_data.get("vendorId"))
    if vendor != VENDOR_ID:
        return None
    value = custom_data.get("event_id", custom_data.get("eventId"))
    if isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID:
        return value
    return None


def occurred_at(timestamp: str, received: dt.datetime) -> dt.datetime:
    """The station's timestamp (RFC 3339), or when it arrived if it is not one."""
    try:
        value = dt.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return received
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def store(
    db: Session,
    charger_id: int,
    event_type: str,
    timestamp: str,
    tech_info: str | None,
    custom_data: Any,
    now: dt.datetime,
) -> bool:
    """Keep the event once; False when this charger sent this event id before (a resend).

    The caller's transaction commits it. A resend racing its first copy on another connection
    meets the unique constraint: the savepoint is rolled back and it counts as a resend.
    """
    event_id = event_id_of(custom_data)
    if event_id is not None:
        seen = db.scalar(
            select(StationSecurityEvent.id).where(
                StationSecurityEvent.charger_id == charger_id,
                StationSecurityEvent.event_id == event_id,
            )
        )
        if seen is not None:
            return False
    row = StationSecurityEvent(
        charger_id=charger_id,
        event_id=event_id,
        type=event_type[:TYPE_MAX],
        tech_info=None if tech_info is None else tech_info[:TECH_INFO_MAX],
        occurred_at=occurred_at(timestamp, now),
        received_at=now,
    )
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:
        return False
    return True


def listed(
    db: Session, owner: User, serial: str, limit: int, before: int | None
) -> list[StationEventView]:
    """The charger's OCPP security events below id `before`, newest first (owner only)."""
    charger = require_owner(db, owner, serial, "see the charger's security events")
    query = select(StationSecurityEvent).where(StationSecurityEvent.charger_id == charger.id)
    rows = db.scalars(keyset_page(query, StationSecurityEvent.id, before, limit))
    return [
        StationEventView(
            e.id,
            e.type,
            meaning(e.type, e.tech_info, aware(e.occurred_at)),
            aware(e.occurred_at),
            aware(e.received_at),
            e.tech_info,
        )
        for e in rows
    ]


def meaning(event_type: str, tech_info: str | None, at: dt.datetime) -> str:
    """What the event means, in words for the owner ("5 wrong PINs from AA:...: locked until
    14:05 UTC"). Only fields that parse are quoted: a station's text is never echoed raw."""
    info = _fields(tech_info)
    phone = _phone(info)
    source = f" from {phone}" if phone else ""
    match event_type:
        case SecurityEventType.LOGIN_FAILED:
            epoch = _number(info, "epoch", MAX_EPOCH)
            at_epoch = f" (PIN epoch {epoch})" if epoch is not None else ""
            count = _number(info, "count", 10**9)  # a storm of failures sent as one event
            what = f"{count} wrong PINs" if count and count > 1 else "wrong PIN"
            return f"{what}{source}{at_epoch}"
        case SecurityEventType.LOGIN_ACCEPTED:
            return f"{phone or 'a phone'} paired with the PIN"
        case SecurityEventType.PIN_LOCKOUT:
            failures = _number(info, "failures", 10**6)
            duration = _number(info, "duration", MAX_SHOWN_SECONDS)
            what = f"{failures} wrong PINs" if failures else "wrong PINs"
            if duration is None:
                return f"{what}{source}: pairing locked"
            until = (at + dt.timedelta(seconds=duration)).strftime("%H:%M UTC")
            return f"{what}{source}: locked until {until}"
        case SecurityEventType.PHONE_REMOVED:
            return f"{phone or 'a phone'} removed from the charger"
        case SecurityEventType.RECONFIGURATION:
            change = str(info.get("change"))
            words = {
                "pin_enabled": "the PIN was enabled",
                "pin_changed": "the PIN was changed",
                "pin_disabled": "the PIN was disabled",
                "pin_rekeyed": "the charger moved to a new PIN sequence (re-key)",
            }
            return words.get(change, "the charger's security settings were changed") + (
                " over Bluetooth" if info.get("origin") == "ble" else ""
            )
        case SecurityEventType.REPLAY:
            return f"a replayed owner ticket was refused{source}"
        case SecurityEventType.INVALID_MESSAGES:
            return f"a malformed message was refused{source}"
        case SecurityEventType.STARTUP:
            return "the charger started"
        case SecurityEventType.EVENTS_DROPPED:
            dropped = _number(info, "dropped", 10**9)
            return f"the charger's event queue was full: {dropped or 'some'} events were not kept"
        case SecurityEventType.RESET:
            when = {"Immediate": "at once", "OnIdle": "once idle"}.get(str(info.get("reset")))
            if info.get("origin") == "ocpp" and when is not None:
                return f"the CSMS reset the charger ({when})"
            return "the charger was reset or rebooted"
    return f"security event {event_type}"


def _fields(tech_info: str | None) -> dict[str, Any]:
    """techInfo's fields when it is a JSON object (ours is), else none."""
    if not tech_info:
        return {}
    try:
        value = json.loads(tech_info)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _phone(info: dict[str, Any]) -> str | None:
    value = info.get("phone")
    return value.upper() if isinstance(value, str) and _ADDRESS.fullmatch(value) else None


def _number(info: dict[str, Any], key: str, maximum: int) -> int | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= maximum:
        return None
    return int(value)
