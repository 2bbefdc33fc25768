"""The security events the charger reports over OCPP (chargepin.core.ocpp_events)."""

from __future__ import annotations

import json

import pytest

from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import (
    MAX_QUEUE,
    STORM_WINDOW,
    TECH_INFO_MAX,
    TYPE_MAX,
    EventFacts,
    Origin,
    Placement,
    QueueTail,
    SecurityEventType,
    custom_data,
    place,
    reset_event,
    security_event,
    startup_event,
    tech_info,
    timestamp,
)

PHONE = "AA:BB:CC:DD:EE:FF"


def test_the_mapping_of_docs_ocpp() -> None:
    wrong = EventFacts(phone=PHONE, reason="wrong_pin")
    expected = {
        (EventKind.PAIRING_FAILED, wrong): SecurityEventType.LOGIN_FAILED,
        (EventKind.PAIRING_OK, EventFacts(with_pin=True)): SecurityEventType.LOGIN_ACCEPTED,
        (EventKind.PIN_ENABLED, EventFacts()): SecurityEventType.RECONFIGURATION,
        (EventKind.PIN_CHANGED, EventFacts()): SecurityEventType.RECONFIGURATION,
        (EventKind.PIN_DISABLED, EventFacts()): SecurityEventType.RECONFIGURATION,
        (EventKind.PIN_REKEYED, EventFacts()): SecurityEventType.RECONFIGURATION,
        (EventKind.TICKET_REJECTED, EventFacts(reason="challenge")): SecurityEventType.REPLAY,
        (EventKind.TICKET_REJECTED, EventFacts(reason="malformed")): (
            SecurityEventType.INVALID_MESSAGES
        ),
        (EventKind.LOCKED, EventFacts(duration=300)): SecurityEventType.PIN_LOCKOUT,
        (EventKind.BOND_REMOVED, EventFacts(phone=PHONE)): SecurityEventType.PHONE_REMOVED,
    }
    for (kind, facts), event_type in expected.items():
        event = security_event(kind, facts, 12)
        assert event is not None and event.type is event_type, kind
    assert SecurityEventType.PIN_LOCKOUT == "org.chargepin.PinLockout"
    assert SecurityEventType.PHONE_REMOVED == "org.chargepin.PhoneRemoved"
    assert startup_event(3, "2.1.0").type == "StartupOfTheDevice"
    assert all(len(kind.value) <= TYPE_MAX for kind in SecurityEventType)


@pytest.mark.parametrize(
    ("kind", "facts"),
    [
        (EventKind.PAIRING_OK, EventFacts(with_pin=False)),  # Just Works: no PIN involved
        (EventKind.PAIRING_REFUSED, EventFacts()),
        (EventKind.PAIRING_ADMITTED, EventFacts()),
        (EventKind.LINK_DROPPED, EventFacts()),
        (EventKind.TICKET_REJECTED, EventFacts(reason="expired")),
        (EventKind.TICKET_REJECTED, EventFacts(reason="not_allowed")),
    ],
)
def test_what_the_csms_is_not_told(kind: EventKind, facts: EventFacts) -> None:
    assert security_event(kind, facts, 0) is None


def test_a_wrong_pin_tech_info_names_origin_phone_and_epoch() -> None:
    event = security_event(
        EventKind.PAIRING_FAILED, EventFacts(phone=PHONE, reason="wrong_pin"), 12
    )
    assert event is not None
    text = tech_info(event.info, 1, 0.0, event.type)
    assert json.loads(text) == {"origin": "ble", "phone": PHONE, "reason": "wrong_pin", "epoch": 12}
    assert " " not in text  # compact


def test_a_lockout_says_its_duration_and_how_many_wrong_pins_made_it() -> None:
    facts = EventFacts(phone=PHONE, duration=300, failures=5)
    event = security_event(EventKind.LOCKED, facts, 4)
    assert event is not None
    info = json.loads(tech_info(event.info, 1, 0.0, event.type))
    assert (info["duration"], info["failures"]) == (300, 5)


def test_a_reset_is_reset_or_reboot_from_ocpp() -> None:
    event = reset_event(7, "OnIdle")
    assert event.type == "ResetOrReboot"
    assert json.loads(tech_info(event.info, 1, 0.0, event.type)) == {
        "origin": "ocpp",
        "reset": "OnIdle",
        "epoch": 7,
    }


def test_tech_info_stays_within_255_characters_and_keeps_the_count() -> None:
    facts = EventFacts(phone="X" * 400, reason="r" * 300)
    event = security_event(EventKind.PAIRING_FAILED, facts, 2**32 - 1)
    assert event is not None
    text = tech_info(event.info, 10**9, 1e9, event.type)
    assert len(text) <= TECH_INFO_MAX
    assert json.loads(text)["count"] == 10**9


def test_identical_failures_within_the_window_are_one_event() -> None:
    facts = EventFacts(phone=PHONE, reason="wrong_pin")
    first = security_event(EventKind.PAIRING_FAILED, facts, 1)
    again = security_event(EventKind.PAIRING_FAILED, facts, 2)  # hardened: the epoch moved
    other = security_event(EventKind.PAIRING_FAILED, EventFacts(phone="AA:BB:CC:DD:EE:00"), 2)
    assert first is not None and again is not None and other is not None
    tail = QueueTail(first.type, first.storm_key, first_at=100.0, in_flight=False)
    assert place(again, 100.0 + STORM_WINDOW, 1, tail) is Placement.MERGE
    assert place(again, 100.0 + STORM_WINDOW + 0.1, 1, tail) is Placement.APPEND
    assert place(other, 101.0, 1, tail) is Placement.APPEND
    # Being sent: a count added now would leave the queue with it, unseen.
    sending = QueueTail(first.type, first.storm_key, first_at=100.0, in_flight=True)
    assert place(again, 101.0, 1, sending) is Placement.APPEND


def test_changes_and_lockouts_are_never_merged() -> None:
    change = security_event(EventKind.PIN_CHANGED, EventFacts(), 1)
    assert change is not None and change.storm_key is None
    tail = QueueTail(change.type, None, first_at=0.0, in_flight=False)
    assert place(change, 1.0, 1, tail) is Placement.APPEND


def test_a_full_queue_drops_into_a_summary() -> None:
    event = startup_event(0, "1.0.0")
    assert place(event, 0.0, MAX_QUEUE - 1, None) is Placement.APPEND
    assert place(event, 0.0, MAX_QUEUE, None) is Placement.DROP
    summary = tech_info({"origin": Origin.DEVICE.value}, 7, 0.0, SecurityEventType.EVENTS_DROPPED)
    assert json.loads(summary) == {
        "origin": "device",
        "dropped": 7,
        "since": "1970-01-01T00:00:00.000Z",
    }


def test_custom_data_and_timestamps() -> None:
    assert custom_data("CP-0001", 42) == {"vendorId": "org.chargepin", "eventId": "CP-0001:42"}
    assert timestamp(1767225600.25) == "2026-01-01T00:00:00.250Z"


@pytest.mark.parametrize("at", [1e20, -1e20, float("inf")])
def test_a_time_no_calendar_date_carries_is_a_value_error(at: float) -> None:
    with pytest.raises(ValueError, match="not a time OCPP can carry"):
        timestamp(at)
