"""The charger's state file as a failing disk or a forger leaves it: damaged bytes of a real
file, random files, and valid SQLite files with garbage rows and values."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble import hci
from bumble.keys import PairingKeys
from hypothesis import strategies as st

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.errors import StateError
from chargepin.charger.service import charger_report, current_pin
from chargepin.charger.store import StateStore
from chargepin.clock import FakeClock
from chargepin.core.errors import ChargepinError
from chargepin.core.lockout import LockoutState, record_failure
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PinState
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.lab.strategies.json_texts import JSON_VALUES, json_texts
from chargepin.lab.strategies.oracle import logged_errors, outcome
from chargepin.lab.testbed import ChargerSpec, provision
from chargepin.radio.virtual import VirtualRadio

STATE_SECRET = bytes(range(32))
STATE_BONDS = ("F1:22:33:44:55:66", "D4:11:22:33:44:55", "00:1B:DC:0A:0B:0C/P")


@functools.cache
def real_state_file() -> bytes:
    """A charger state file as a daemon leaves it after some use: a custom PIN, failures in the
    lockout window, events, counters and three bonds (one with an IRK, one Just Works)."""
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        with provision(path, ChargerSpec(serial="CP-0001", secret=STATE_SECRET)) as store:
            store.save_pin_state(PinState(True, 3, Pin("385172")))
            state = LockoutState()
            for second in (1000.0, 1010.0, 1020.0):
                state = record_failure(PROFILES[ProfileName.HARDENED].lockout, state, second)
            store.save_lockout_state(state)
            for index in range(12):
                store.record_event("pairing_failed", f"F1:22:33:44:55:{index:02X} wrong_pin", 1e9)
            store.record_event("pairing_ok", "F1:22:33:44:55:66 passkey", 1e9 + 5)
            key = PairingKeys.Key(value=bytes(range(16)), authenticated=True)
            keys = [
                PairingKeys(ltk=key, irk=PairingKeys.Key(value=bytes(16))),
                PairingKeys(ltk=PairingKeys.Key(value=bytes(16), authenticated=False)),
                PairingKeys(ltk=key, address_type=hci.AddressType.PUBLIC_DEVICE),
            ]
            for address, bond in zip(STATE_BONDS, keys, strict=True):
                asyncio.run(store.keystore.update(address, bond))
        leftovers = sorted(p.name for p in Path(tmp).iterdir() if p != path)
        assert not leftovers, f"closing the store left {leftovers}"
        return path.read_bytes()


@functools.cache
def _state_columns() -> tuple[tuple[str, str], ...]:
    """(table, column) of every table in the real state file, read from the file itself."""
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(real_state_file())
        connection = sqlite3.connect(path)
        try:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            return tuple(
                (table, row[1])
                for table in tables
                for row in connection.execute(f"PRAGMA table_info({table})")
            )
        finally:
            connection.close()


@functools.cache
def _json_keys() -> tuple[str, ...]:
    """Every object key in the JSON the real state file stores (lockout, bonds)."""
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            keys.update(value)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(real_state_file())
        connection = sqlite3.connect(path)
        try:
            for table, column in _state_columns():
                for (value,) in connection.execute(f"SELECT {column} FROM {table}"):
                    if isinstance(value, str) and value[:1] in "[{":
                        walk(json.loads(value))
        finally:
            connection.close()
    return tuple(sorted(keys))


SQL_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.deferred(
        lambda: json_texts(
            st.dictionaries(st.sampled_from(_json_keys()), JSON_VALUES, min_size=1, max_size=4)
        )
    ),
)
"""What a damaged or forged row may hold in any column (SQLite is dynamically typed)."""


@dataclass(frozen=True)
class SqlEdit:
    """One change made through SQLite, CHECK constraints off: the file stays a database."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ByteDamage:
    """One change to the file's bytes (what a failing flash or a cut write does).

    `at` is taken modulo the file's length (or page count), so it fits whatever file it hits.
    """

    kind: str  # flip (xor `data[0]` at `at`), truncate, extend, page (overwrite one page)
    at: int
    data: bytes = b"\x01"

    def apply(self, blob: bytes, page_size: int = 4096) -> bytes:
        if self.kind == "extend":
            return blob + self.data
        if not blob:
            return blob
        if self.kind == "flip":
            at = self.at % len(blob)
            return blob[:at] + bytes([blob[at] ^ (self.data[0] or 1)]) + blob[at + 1 :]
        if self.kind == "truncate":
            return blob[: self.at % len(blob)]
        pages = max(1, len(blob) // page_size)
        start = (self.at % pages) * page_size
        fill = (self.data or b"\x00") * (page_size // max(1, len(self.data)) + 1)
        return blob[:start] + fill[:page_size] + blob[start + page_size :]


@dataclass(frozen=True)
class StateFileCase:
    """A charger state file: `raw` bytes, or the real file with SQL edits then byte damage."""

    raw: bytes | None = None
    edits: tuple[SqlEdit, ...] = ()
    damage: tuple[ByteDamage, ...] = ()

    def build(self) -> bytes:
        if self.raw is not None:
            return self.raw
        data = real_state_file()
        if self.edits:
            with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
                path = Path(tmp) / "charger.db"
                path.write_bytes(data)
                connection = sqlite3.connect(path, isolation_level=None)
                try:
                    connection.execute("PRAGMA ignore_check_constraints = ON")
                    for edit in self.edits:
                        # NOT NULL and UNIQUE still hold; an earlier edit may have dropped
                        # the table: such an edit changes nothing.
                        with contextlib.suppress(sqlite3.IntegrityError, sqlite3.OperationalError):
                            connection.execute(edit.sql, edit.params)
                finally:
                    connection.close()
                data = path.read_bytes()
        for damage in self.damage:
            data = damage.apply(data)
        return data


@st.composite
def sql_edits(draw: st.DrawFn) -> SqlEdit:
    """Garbage in one column, rows removed or added, a table dropped, another schema version."""
    table, column = draw(st.sampled_from(_state_columns()), label="column")
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "insert", "drop", "version"]))
    if kind == "set":
        return SqlEdit(f"UPDATE {table} SET {column} = ?", (draw(SQL_VALUES, label="value"),))
    if kind == "delete":
        return SqlEdit(f"DELETE FROM {table}")
    if kind == "insert":
        columns = [name for other, name in _state_columns() if other == table]
        values = tuple(draw(SQL_VALUES, label=name) for name in columns)
        marks = ", ".join("?" for _ in columns)
        return SqlEdit(f"INSERT INTO {table} VALUES ({marks})", values)
    if kind == "drop":
        return SqlEdit(f"DROP TABLE {table}")
    return SqlEdit(f"PRAGMA user_version = {draw(st.integers(-(2**31), 2**31 - 1))}")


BYTE_DAMAGE = st.builds(
    ByteDamage,
    kind=st.sampled_from(["flip", "flip", "flip", "truncate", "extend", "page"]),
    at=st.integers(0, 2**20),
    data=st.binary(min_size=1, max_size=64),
)

STATE_FILE_DAMAGE = st.one_of(
    st.lists(BYTE_DAMAGE, min_size=1, max_size=8).map(lambda d: StateFileCase(damage=tuple(d))),
    st.binary(max_size=8192).map(lambda raw: StateFileCase(raw=raw)),
    st.binary(max_size=4096).map(lambda tail: StateFileCase(raw=b"SQLite format 3\x00" + tail)),
)
"""Bit flips, cuts, extensions and overwritten pages of a real state file, and random files."""
STATE_FILE_VALUES = st.builds(
    StateFileCase,
    edits=st.lists(sql_edits(), min_size=1, max_size=3).map(tuple),
    damage=st.lists(BYTE_DAMAGE, max_size=1).map(tuple),
)
"""A valid SQLite file with garbage rows and values (and sometimes one damaged byte)."""


async def _start_daemon(path: Path) -> None:
    """What `chargepin charger run` does first: open the state, build the daemon, power on
    (Bumble loads the bonds' IRKs), advertise, and resolve the private address of a phone
    that connects (as Bumble does on every connection); then stop."""
    store = StateStore.open(path)
    radio = VirtualRadio()
    endpoints = radio.attach("charger")
    try:
        daemon = ChargerDaemon(store, endpoints, clock=FakeClock())
        try:
            await daemon.start()
            resolver = daemon.device.address_resolver
            if resolver is not None:
                resolver.resolve(hci.Address.generate_private_address(bytes(16)))
        finally:
            await daemon.stop()
    finally:
        store.close()
        radio.detach(endpoints)


def _read_everything(store: StateStore) -> None:
    """Every read the store offers (the daemon's, the CLI's and the lab's)."""
    for read in (
        lambda: store.profile,
        lambda: store.lockout_config,
        lambda: store.lockout_state,
        lambda: store.custom_pin,
        lambda: store.epoch,
        lambda: store.pin_enabled,
        store.current_pin,
        store.counters,
        store.events,
        store.keystore.list_bonds,
        lambda: asyncio.run(store.keystore.get_all()),
    ):
        outcome(read, ChargepinError)


def check_state_file(case: StateFileCase) -> None:
    """A damaged state file is refused at open with a StateError that says what to do, and left
    as it was; a file that opens serves `charger info`, `charger pin` and a daemon start, or
    they fail with a ChargepinError."""
    data = case.build()
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(data)
        opened = outcome(lambda: StateStore.open(path), StateError)
        if isinstance(opened, StateError):
            advice = ("restore", "provision", "upgrade", "check")
            assert any(word in str(opened) for word in advice), f"no next step in: {opened}"
            assert path.read_bytes() == data, "a refused state file was changed"
            return
        with opened:
            _read_everything(opened)
        outcome(lambda: charger_report(path), ChargepinError)
        outcome(lambda: current_pin(path), ChargepinError)
        with logged_errors() as log:
            outcome(lambda: asyncio.run(_start_daemon(path)), ChargepinError)
        assert not log.records, f"the daemon logged errors: {log.take()}"
