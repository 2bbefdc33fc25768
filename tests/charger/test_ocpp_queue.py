"""The OCPP security-event queue and the CSMS password in the charger's state file (schema 3).

Real SQLite files: an event is queued in the transaction of the state change it reports, the
storm rule and the queue bound hold on disk, and a rotated password survives reopening.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from chargepin.charger.errors import StateError
from chargepin.charger.store import SCHEMA_VERSION, StateStore
from chargepin.core import ocpp_events
from chargepin.core.csms_auth import csms_password
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts, SecurityEventType
from tests.charger.test_store import SECRET, provision

PHONE = "F1:22:33:44:55:66"
WRONG = EventFacts(phone=PHONE, reason="wrong_pin")


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return provision(tmp_path / "charger.db")


def test_a_reported_event_is_queued_with_its_log_entry(store: StateStore) -> None:
    store.record_event(EventKind.PAIRING_FAILED, f"{PHONE} wrong_pin", 1000.0, WRONG)
    store.record_event(EventKind.LINK_DROPPED, f"{PHONE} idle", 1001.0)  # not reported
    [queued] = store.queued_events()
    assert queued.type == "MaintenanceLoginFailed"
    assert json.loads(queued.tech_info) == {
        "origin": "ble",
        "phone": PHONE,
        "reason": "wrong_pin",
        "epoch": 0,
    }
    assert queued.count == 1 and queued.at == 1000.0


def test_the_event_and_the_state_change_commit_together_or_not_at_all(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.save_pin_state(store.pin_state.rotated())
        store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1000.0)
        raise RuntimeError("power cut before the commit")
    assert store.queue_length() == 0 and store.epoch == 0
    with store.transaction():
        store.save_pin_state(store.pin_state.rotated())
        store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1000.0)
    path = store.path
    store.close()
    with StateStore.open(path) as again:
        [queued] = again.queued_events()
        assert queued.type == "ReconfigurationOfSecurityParameters" and again.epoch == 1


def test_listeners_hear_of_a_queued_event_after_the_commit(store: StateStore) -> None:
    heard: list[int] = []
    remove = store.on_queued(lambda: heard.append(store.queue_length()))
    with store.transaction():
        store.record_event(EventKind.PIN_ENABLED, "owner ticket", 1.0)
        assert heard == []  # not before the commit: the station would find nothing
    assert heard == [1]
    store.record_event(EventKind.LINK_DROPPED, "x", 2.0)
    assert heard == [1]  # nothing queued, nobody woken
    remove()
    store.record_event(EventKind.PIN_DISABLED, "owner ticket", 3.0)
    assert heard == [1]


def test_a_storm_of_identical_failures_is_one_event_with_a_count(store: StateStore) -> None:
    for second in range(2_000):
        store.record_event(EventKind.PAIRING_FAILED, "x", 1000.0 + second * 0.02, WRONG)
    [queued] = store.queued_events()
    info = json.loads(queued.tech_info)
    assert queued.count == info["count"] == 2_000
    assert info["since"] == ocpp_events.timestamp(1000.0)
    # After the window, a new event; another phone, another event.
    store.record_event(EventKind.PAIRING_FAILED, "x", 1000.0 + ocpp_events.STORM_WINDOW + 1, WRONG)
    store.record_event(
        EventKind.PAIRING_FAILED, "x", 1062.0, EventFacts(phone="F1:00:00:00:00:01", reason="x")
    )
    assert [event.count for event in store.queued_events()] == [2_000, 1, 1]


def test_an_event_being_sent_takes_no_more_counts(store: StateStore) -> None:
    store.record_event(EventKind.PAIRING_FAILED, "x", 1000.0, WRONG)
    [sent] = store.queued_events()
    store.sending(sent.id)
    store.record_event(EventKind.PAIRING_FAILED, "x", 1001.0, WRONG)
    store.acknowledge(sent.id)
    [rest] = store.queued_events()
    assert rest.id != sent.id and rest.count == 1


def test_the_queue_is_bounded_and_says_how_many_it_dropped(store: StateStore) -> None:
    with store.transaction():
        for index in range(ocpp_events.MAX_QUEUE + 250):
            store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1000.0 + index)
    queued = store.queued_events(limit=ocpp_events.MAX_QUEUE + 10)
    assert len(queued) == ocpp_events.MAX_QUEUE + 1
    summary = queued[-1]
    assert summary.type == SecurityEventType.EVENTS_DROPPED
    assert json.loads(summary.tech_info)["dropped"] == 250
    # The counters and the log still know every event.
    assert store.counters()[EventKind.PIN_CHANGED] == ocpp_events.MAX_QUEUE + 250


def test_acknowledged_ids_are_never_reused(store: StateStore) -> None:
    store.record_event(EventKind.PIN_ENABLED, "a", 1.0)
    [first] = store.queued_events()
    store.acknowledge(first.id)
    store.record_event(EventKind.PIN_DISABLED, "b", 2.0)
    [second] = store.queued_events()
    assert second.id > first.id  # a CSMS that drops duplicates by eventId loses nothing


def test_the_csms_password_is_derived_until_a_csms_sets_one(store: StateStore) -> None:
    assert store.csms_password == csms_password(SECRET, store.identity.serial)
    assert not store.csms_password_rotated
    store.set_csms_password("a-new-password-from-the-csms")
    path = store.path
    store.close()
    with StateStore.open(path) as again:
        assert again.csms_password == "a-new-password-from-the-csms"
        assert again.csms_password_rotated
        with pytest.raises(StateError, match="16 to 40 characters"):
            again.set_csms_password("short")
        assert again.csms_password == "a-new-password-from-the-csms"


def test_a_schema_2_file_gains_the_queue_and_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "charger.db"
    with provision(path) as store:
        store.advance_epoch()
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "DROP TABLE ocpp_queue; DROP TABLE csms_credentials; DROP TABLE applied_ops;"
            " PRAGMA user_version = 2;"
        )
    with StateStore.open(path) as store:
        assert store.epoch == 1 and store.queue_length() == 0
        connection = store.keystore.connection
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        store.record_event(EventKind.PIN_ENABLED, "owner ticket", 1.0)
        assert store.queue_length() == 1


def commit_levels(store: StateStore) -> list[str]:
    """The `synchronous` level in force at each COMMIT from now on (SQLite reads it there),
    replayed from the statements the connection runs (2 FULL, 1 NORMAL)."""
    levels: list[str] = []
    level = ["2"]  # FULL, the connection's level

    def traced(statement: str) -> None:
        if statement.startswith("PRAGMA synchronous = "):
            level[0] = statement.rsplit(" ", 1)[1]
        elif statement == "COMMIT":
            levels.append(level[0])

    store.keystore.connection.set_trace_callback(traced)
    return levels


def test_only_an_answered_events_deletion_commits_without_waiting_for_the_disk(
    store: StateStore,
) -> None:
    """The event's record is synced (a power cut keeps it); its deletion once answered is not
    (a power cut may send it again, with the same eventId: docs/PERFORMANCE.md); every commit
    after the deletion is synced again, and so the deletion with it."""
    levels = commit_levels(store)
    store.record_event(EventKind.PAIRING_FAILED, f"{PHONE} wrong_pin", 1000.0, WRONG)
    [event] = store.queued_events()
    store.acknowledge(event.id)
    store.record_event(EventKind.PAIRING_FAILED, f"{PHONE} wrong_pin", 1001.0, WRONG)
    store.save_lockout_state(store.lockout_state)
    assert levels == ["2", "1", "2", "2"]  # FULL, NORMAL (core.durability.EVENT_ANSWERED), ...
    assert store.keystore.connection.execute("PRAGMA synchronous").fetchone()[0] == 2
