"""StateStore on real SQLite files: provisioning, write-through state, errors, and kill -9."""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from bumble.keys import PairingKeys

from chargepin.charger.errors import StateError
from chargepin.charger.store import (
    EVENT_KINDS,
    MAX_EVENTS,
    SCHEMA_VERSION,
    ChargerIdentity,
    LogEntry,
    StateStore,
)
from chargepin.core.addresses import random_static_address
from chargepin.core.durability import Durability
from chargepin.core.epochs import epoch_pin
from chargepin.core.events import EventKind
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.lockout import LockoutConfig, LockoutState, record_failure
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PinState
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import lockout_config
from chargepin.radio.keystore import BondInfo

SECRET = bytes(range(32))
IDENTITY = ChargerIdentity(
    serial="PX-2025_000123",
    model="Pulsar Max",
    firmware=FirmwareVersion.parse("6.11.2"),
    produced=datetime.date(2025, 9, 1),
    address="C0:12:34:56:78:9A",
    irk=b"\x5a" * 16,
)
CHILD = Path(__file__).with_name("kill9_child.py")


def provision(path: Path, **overrides: object) -> StateStore:
    """A freshly provisioned store with test values, any argument overridable."""
    arguments: dict[str, object] = {
        "identity": IDENTITY,
        "secret": SECRET,
        "profile": "hardened",
        "lockout": lockout_config("hardened"),
        "pin_enabled": True,
    }
    arguments.update(overrides)
    return StateStore.create(path, **arguments)  # type: ignore[arg-type]


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    provision(tmp_path / "charger.db").close()
    return tmp_path / "charger.db"


# -- provisioning and reading back ----------------------------------------------------------


def test_create_then_open_reads_everything_back(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        assert store.identity == IDENTITY
        assert store.secret == SECRET
        assert store.profile == "hardened"
        assert store.lockout_config == lockout_config("hardened")
        assert store.pin_enabled is True
        assert store.custom_pin is None
        assert store.epoch == 0
        assert store.lockout_state == LockoutState()
        assert store.events() == []
        assert store.counters() == dict.fromkeys(EVENT_KINDS, 0)
        assert store.path == state_path


def test_the_file_is_private_wal_and_synced(state_path: Path) -> None:
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    with StateStore.open(state_path) as store:
        connection = store.keystore.connection
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_classic_profile_and_disabled_pin(tmp_path: Path) -> None:
    with provision(
        tmp_path / "c.db", profile="classic", lockout=lockout_config("classic"), pin_enabled=False
    ) as store:
        assert (store.profile, store.lockout_config) == ("classic", lockout_config("classic"))
        assert store.pin_enabled is False


def test_random_static_addresses_are_valid_and_accepted(tmp_path: Path) -> None:
    addresses = {random_static_address() for _ in range(200)}
    assert len(addresses) == 200
    for address in addresses:
        assert int(address[:2], 16) >> 6 == 0b11
    identity = ChargerIdentity(**{**IDENTITY.__dict__, "address": addresses.pop()})
    with provision(tmp_path / "r.db", identity=identity) as store:
        assert store.identity == identity


# -- PIN configuration ----------------------------------------------------------------------


def test_current_pin_follows_the_epoch_unless_a_custom_pin_is_set(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        assert store.current_pin() == epoch_pin(SECRET, IDENTITY.serial, 0)
        store.save_pin_state(PinState(True, 0, Pin("482915")))
        assert store.current_pin() == Pin("482915")

        assert store.advance_epoch() == 1
        assert store.custom_pin is None
        assert store.current_pin() == epoch_pin(SECRET, IDENTITY.serial, 1)


def test_pin_config_survives_reopen(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.save_pin_state(PinState(False, 7, Pin("093817")))
    with StateStore.open(state_path) as store:
        assert (store.pin_enabled, store.custom_pin, store.epoch) == (False, Pin("093817"), 7)


def test_the_epoch_never_goes_back(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.save_pin_state(PinState(True, 4, None))
        with pytest.raises(StateError, match="cannot go back from 4 to 3"):
            store.save_pin_state(PinState(False, 3, Pin("482915")))
        with pytest.raises(StateError, match="non-negative"):
            store.save_pin_state(PinState(False, -1, None))
        assert (store.pin_enabled, store.custom_pin, store.epoch) == (True, None, 4)


def test_the_epoch_stops_at_the_last_one_the_air_carries(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        with pytest.raises(StateError, match="u32"):
            store.save_pin_state(PinState(True, MAX_EPOCH + 1, None))
        store.save_pin_state(PinState(True, MAX_EPOCH - 1, None))
        assert store.advance_epoch() == MAX_EPOCH
        with pytest.raises(StateError, match="u32"):
            store.advance_epoch()
    with StateStore.open(state_path) as store:
        assert store.epoch == MAX_EPOCH


# -- lockout --------------------------------------------------------------------------------


def test_lockout_state_survives_reopen(state_path: Path) -> None:
    config = lockout_config("hardened")
    state = LockoutState()
    for second in range(5):
        state = record_failure(config, state, 1000.0 + second)
    assert state.locked_until is not None
    with StateStore.open(state_path) as store:
        store.save_lockout_state(state)
    with StateStore.open(state_path) as store:
        assert store.lockout_state == state


def test_a_failed_transaction_changes_nothing(state_path: Path) -> None:
    locked = LockoutState(locked_from=10.0, locked_until=310.0, recent_lockouts=(10.0,))
    with StateStore.open(state_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.save_lockout_state(locked)
            store.advance_epoch()
            store.record_event("locked", "5 wrong PINs", 10.0)
            raise RuntimeError("power cut in the middle of an attempt")
        assert store.lockout_state == LockoutState()
        assert store.epoch == 0
        assert store.events() == []

        with store.transaction(), store.transaction():
            store.save_lockout_state(locked)
            store.advance_epoch()
    with StateStore.open(state_path) as store:
        assert (store.lockout_state, store.epoch) == (locked, 1)


def test_an_ordered_transaction_refuses_a_write_that_must_be_synced(state_path: Path) -> None:
    """core.durability: the lockout and the PIN state are SYNCED; inside an ORDERED block they
    would reach the disk only with a later commit, so the block is refused, whole."""
    locked = LockoutState(locked_from=10.0, locked_until=310.0, recent_lockouts=(10.0,))
    with StateStore.open(state_path) as store:
        connection = store.keystore.connection
        with pytest.raises(StateError, match="synced"), store.transaction(Durability.ORDERED):
            store.record_event("pairing_ok", "F1:22:33:44:55:66 passkey", 10.0)
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            store.save_lockout_state(locked)
        assert (store.lockout_state, store.events()) == (LockoutState(), [])
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        with store.transaction(Durability.ORDERED):
            store.record_event("pairing_ok", "F1:22:33:44:55:66 passkey", 10.0)
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2
    with StateStore.open(state_path) as store:
        assert [entry.kind for entry in store.events()] == ["pairing_ok"]


# -- events ---------------------------------------------------------------------------------


def test_events_are_logged_in_order_and_counted(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.record_event("pairing_failed", "wrong PIN from F1:22:33:44:55:66", 100.0)
        store.record_event("pairing_failed", "aborted by F1:22:33:44:55:66", 101.0)
        store.record_event("pairing_ok", "F1:22:33:44:55:66", 102.0)
        store.record_event(EventKind.PIN_CHANGED, "bonds kept", 103.0)
    with StateStore.open(state_path) as store:
        assert store.events(limit=2) == [
            LogEntry(102.0, "pairing_ok", "F1:22:33:44:55:66"),
            LogEntry(103.0, "pin_changed", "bonds kept"),
        ]
        assert [event.at for event in store.events()] == [100.0, 101.0, 102.0, 103.0]
        counters = store.counters()
        assert counters["pairing_failed"] == 2
        assert counters["pairing_ok"] == 1
        assert counters["pin_changed"] == 1
        assert counters["locked"] == 0


def test_every_kind_the_charger_records_is_counted_and_no_other(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        for kind in ("pairing_refused", "pairing_admitted", "link_dropped"):
            store.record_event(kind, "", 1.0)
        with pytest.raises(StateError, match="unknown event kind 'firmware_updated'"):
            store.record_event("firmware_updated", "6.11.3", 2.0)
        counters = store.counters()
        kinds = [event.kind for event in store.events()]
    assert set(counters) == {kind.value for kind in EventKind}
    assert counters["pairing_refused"] == counters["link_dropped"] == 1
    assert kinds == ["pairing_refused", "pairing_admitted", "link_dropped"]


def test_the_log_is_bounded_but_the_counters_are_not(state_path: Path) -> None:
    total = MAX_EVENTS + 25
    with StateStore.open(state_path) as store:
        with store.transaction():
            for index in range(total):
                store.record_event("pairing_failed", f"attempt {index}", float(index))
        log = store.events(limit=total)
        assert len(log) == MAX_EVENTS
        assert log[-1] == LogEntry(float(total - 1), "pairing_failed", f"attempt {total - 1}")
        assert store.counters()["pairing_failed"] == total


# -- bonds on the same database -------------------------------------------------------------


async def test_bonds_live_in_the_same_file(state_path: Path) -> None:
    keys = PairingKeys(ltk=PairingKeys.Key(value=bytes(16), authenticated=True))
    with StateStore.open(state_path) as store:
        await store.keystore.update("F1:22:33:44:55:66", keys)
    with StateStore.open(state_path) as store:
        assert await store.keystore.get("F1:22:33:44:55:66") == keys
        [bond] = store.keystore.list_bonds()
        assert bond == BondInfo("F1:22:33:44:55:66", True, bond.created)


# -- every StateError path ------------------------------------------------------------------


def test_open_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(StateError, match=r"no charger state at .*chargepin charger init --state"):
        StateStore.open(path)
    assert not path.exists()


def test_open_a_file_of_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    noise = random.Random(7).randbytes(8192)
    path.write_bytes(noise)
    with pytest.raises(StateError, match="is not a chargepin state database: file is not a"):
        StateStore.open(path)
    assert path.read_bytes() == noise


@pytest.mark.parametrize("with_table", [False, True], ids=["empty-file", "foreign-table"])
def test_open_a_sqlite_database_that_is_not_ours(tmp_path: Path, with_table: bool) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    if with_table:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="not a chargepin charger state"):
        StateStore.open(path)
    assert path.read_bytes() == before


def test_open_a_newer_schema(state_path: Path) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("PRAGMA user_version = 5")
    with pytest.raises(StateError, match=r"schema version 5, newer.*upgrade chargepin"):
        StateStore.open(state_path)


def _as_schema_1(path: Path) -> None:
    """Make `path` what chargepin wrote before re-keying: pin_config without a generation."""
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """
            CREATE TABLE pin_config_1 (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
                custom_pin TEXT,
                epoch INTEGER NOT NULL CHECK (epoch >= 0));
            INSERT INTO pin_config_1 SELECT id, enabled, custom_pin, epoch FROM pin_config;
            DROP TABLE pin_config;
            ALTER TABLE pin_config_1 RENAME TO pin_config;
            DROP TABLE ocpp_queue;
            DROP TABLE csms_credentials;
            DROP TABLE applied_ops;
            PRAGMA user_version = 1;
            """
        )


def test_a_schema_1_file_opens_in_generation_0_with_its_pin(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.advance_epoch()
        store.advance_epoch()
        pin = store.current_pin()
    _as_schema_1(state_path)
    with StateStore.open(state_path) as store:
        assert store.generation == 0
        assert store.epoch == 2
        assert store.current_pin() == pin
        version = store.keystore.connection.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION
        store.save_pin_state(store.pin_state.rekeyed())
    with StateStore.open(state_path) as store:
        assert store.generation == 1
        assert store.current_pin() != pin


def test_a_failed_upgrade_says_so_and_changes_nothing(state_path: Path) -> None:
    # Says schema 1 but already has the column: the upgrade's ALTER fails and rolls back.
    with sqlite3.connect(state_path) as connection:
        connection.execute("PRAGMA user_version = 1")
    before = state_path.read_bytes()
    with pytest.raises(StateError, match=r"cannot upgrade .* schema version 1 to 4.*backup"):
        StateStore.open(state_path)
    assert state_path.read_bytes() == before


def test_the_generation_never_goes_back(state_path: Path) -> None:
    with StateStore.open(state_path) as store:
        store.save_pin_state(store.pin_state.rekeyed().rekeyed())
        with pytest.raises(StateError, match="generation cannot go back from 2 to 1"):
            store.save_pin_state(replace(store.pin_state, generation=1))
        with pytest.raises(StateError, match="generation must be a whole number"):
            store.save_pin_state(replace(store.pin_state, generation=2**32))
        assert store.generation == 2


def test_open_with_a_missing_table(state_path: Path) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("DROP TABLE lockout")
    with pytest.raises(StateError, match=r"missing table lockout.*chargepin charger init"):
        StateStore.open(state_path)


def test_open_with_a_missing_row(state_path: Path) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("DELETE FROM pin_config")
    with pytest.raises(StateError, match="incomplete \\(table pin_config has no row\\)"):
        StateStore.open(state_path)


def test_open_with_a_damaged_value(state_path: Path) -> None:
    with sqlite3.connect(state_path) as connection:
        connection.execute("UPDATE lockout SET state = ?", (json.dumps({"bogus": 1}),))
    with pytest.raises(StateError, match=r"invalid value .*unknown keys"):
        StateStore.open(state_path)


def test_open_with_a_queued_event_at_a_time_no_clock_reaches(state_path: Path) -> None:
    """`charger info` and the OCPP link read the queue: its damage is found at open."""
    with StateStore.open(state_path) as store:
        store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1000.0)
    with sqlite3.connect(state_path) as connection:
        connection.execute("UPDATE ocpp_queue SET first_at = 1e20, count = 2")  # "since"
    with pytest.raises(StateError, match=r"invalid value .*not a time OCPP can carry.*restore"):
        StateStore.open(state_path)


@pytest.mark.parametrize(("column", "value"), [("at", 1e20), ("at", ""), ("info", "[1")])
def test_open_with_a_damaged_queued_event(state_path: Path, column: str, value: object) -> None:
    """The time the link sends (`at`, also for a single event) and techInfo are checked too."""
    with StateStore.open(state_path) as store:
        store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1000.0)
    with sqlite3.connect(state_path) as connection:
        connection.execute(f"UPDATE ocpp_queue SET {column} = ?", (value,))
    with pytest.raises(StateError, match=r"invalid value .*restore it from backup"):
        StateStore.open(state_path)


def test_create_refuses_an_existing_file(state_path: Path) -> None:
    before = state_path.read_bytes()
    with pytest.raises(StateError, match="already exists; provision into another path"):
        provision(state_path, secret=b"\x01" * 32)
    assert state_path.read_bytes() == before


@pytest.mark.parametrize("serial", ["", "X" * 33, "PX 123", "PX/123", "PX\u00c4123", "PX-1\n"])
def test_create_refuses_a_bad_serial(tmp_path: Path, serial: str) -> None:
    identity = ChargerIdentity(**{**IDENTITY.__dict__, "serial": serial})
    with pytest.raises(StateError, match=r"serial .* is not valid; use 1 to 32 characters"):
        provision(tmp_path / "s.db", identity=identity)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_create_refuses_a_bad_secret_length(tmp_path: Path, length: int) -> None:
    with pytest.raises(StateError, match=f"secret must be 32 bytes, got {length}"):
        provision(tmp_path / "s.db", secret=bytes(length))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("00:11:22:33:44:55", "two most significant bits"),
        ("40:11:22:33:44:55", "two most significant bits"),
        ("C0:00:00:00:00:00", "all 0 or all 1"),
        ("FF:FF:FF:FF:FF:FF", "all 0 or all 1"),
        ("c0:12:34:56:78:9a", "not six hexadecimal octets"),
        ("C0:12:34:56:78", "not six hexadecimal octets"),
    ],
)
def test_create_refuses_a_bad_address(tmp_path: Path, address: str, reason: str) -> None:
    identity = ChargerIdentity(**{**IDENTITY.__dict__, "address": address})
    with pytest.raises(StateError, match=f"not a random static address: .*{reason}"):
        provision(tmp_path / "a.db", identity=identity)


def test_create_refuses_a_bad_irk_or_profile(tmp_path: Path) -> None:
    identity = ChargerIdentity(**{**IDENTITY.__dict__, "irk": bytes(15)})
    with pytest.raises(StateError, match="IRK must be 16 bytes"):
        provision(tmp_path / "i.db", identity=identity)
    with pytest.raises(StateError, match="unknown security profile 'paranoid'"):
        provision(tmp_path / "p.db", profile="paranoid")
    assert list(tmp_path.iterdir()) == []


# -- durability -----------------------------------------------------------------------------


def replayed_state(config: LockoutConfig, epoch: int) -> LockoutState:
    """The lockout state the child has saved together with `epoch` (see kill9_child.py)."""
    base, step = 1_700_000_000.0, 7.0
    state = LockoutState()
    for attempt in range(1, epoch + 1):
        state = record_failure(config, state, base + step * attempt)
    return state


@pytest.mark.slow
def test_kill_9_never_loses_a_committed_attempt(state_path: Path) -> None:
    rng = random.Random()
    config = lockout_config("hardened")
    last_epoch = 0
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(state_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        wanted = rng.randint(3, 80)
        printed = [child.stdout.readline() for _ in range(wanted)]
        child.send_signal(signal.SIGKILL)
        # Read through the same buffered reader: communicate() would read the raw pipe and
        # skip lines readline() already buffered.
        rest, errors = child.stdout.read(), child.stderr.read() if child.stderr else ""
        child.wait()
        assert child.returncode == -signal.SIGKILL, errors
        printed += rest.splitlines()
        epoch_text, state_text = printed[-1].split(" ", 1)
        printed_epoch = int(epoch_text)
        assert printed_epoch >= last_epoch + wanted
        assert LockoutState.from_dict(json.loads(state_text)) == replayed_state(
            config, printed_epoch
        )

        with StateStore.open(state_path) as store:
            # The attempt after the last printed one may have committed before the kill.
            assert store.epoch in (printed_epoch, printed_epoch + 1)
            assert store.lockout_state == replayed_state(config, store.epoch)
            last_epoch = store.epoch
    assert os.path.getsize(state_path) > 0
