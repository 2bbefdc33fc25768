"""Bumble bonds kept in a SQLite table, one row per peer, each change its own transaction.

Bumble's `JsonKeyStore` rewrites the whole file on every change and, opened without a namespace
on a file holding another namespace, destroys it on its next write (see notes/bumble.md, Bonds).
A row per bond in SQLite (WAL) is never half written and shares the charger's state database,
so bonds and the rest of the charger's state cannot drift apart. A new bond is committed ORDERED
(core.durability: a power cut may lose it, the phone then pairs again), a removal SYNCED.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble import hci
from bumble.keys import KeyStore, PairingKeys

from chargepin.core import durability
from chargepin.core.durability import Durability
from chargepin.core.errors import ChargepinError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

BOND_KEY_LENGTH = 16
"""Bytes of every LE key a bond holds: LTK, IRK, CSRK (Core spec Vol 3 Part H 2.4)."""

DAMAGED_VALUE = (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError)
"""What reading a garbage value raises: text where a number belongs, a 10**400 that SQLite
stored as infinity, JSON nested past the recursion limit, JSON of the wrong shape."""


class KeyStoreError(ChargepinError):
    """A bonds file that cannot be used (not SQLite, corrupt, unreadable)."""


@dataclass(frozen=True)
class BondInfo:
    """One bonded peer as an owner sees it in the paired-phone list.

    `authenticated` is True only for keys from a MITM-protected pairing (passkey entry): a bond
    from Just Works must never count as a phone that knew the PIN.
    """

    address: str
    authenticated: bool
    created: float


class SqliteKeyStore(KeyStore):
    """A `bumble.keys.KeyStore` on a SQLite table: (address, keys as JSON, created, updated).

    It writes through on a connection it is given (normally the charger's state store), so it
    keeps no copy of its own. `update` replaces a peer's keys, as `MemoryKeyStore` does: a
    re-pairing must not leave a stale IRK or LTK of the previous bond behind. Writes commit
    immediately (`update` ORDERED, removals SYNCED: core.durability), unless the caller already
    holds a transaction on the connection, in which case the caller's commit makes them durable
    together with its own changes.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        table: str = "bonds",
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"bond table name {table!r} is not a plain SQL identifier")
        self._connection = connection
        self._table = table
        self._clock = clock
        self._owns_connection = False
        self.on_change = on_change
        self._resolving: dict[str, tuple[bytes, hci.Address]] | None = None
        self._resolving_version = -1
        """Called after every committed change (the daemon refreshes advertising with it)."""
        self._write(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " address TEXT PRIMARY KEY,"
            " keys TEXT NOT NULL,"
            " created REAL NOT NULL,"
            " updated REAL NOT NULL)",
            (),
            Durability.SYNCED,
            notify=False,
        )

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection the bonds live on."""
        return self._connection

    def close(self) -> None:
        """Close the connection if this key store opened it (see `open_keystore_file`)."""
        if self._owns_connection:
            self._connection.close()

    async def delete(self, name: str) -> None:
        """Forget the bond with `name`; forgetting an unknown peer is not an error.

        Idempotent rather than raising `KeyError` like `JsonKeyStore`: a removal retried after a
        crash or a dropped link must succeed.
        """
        self._write(
            f"DELETE FROM {self._table} WHERE address = ?",
            (name,),
            durability.BOND_REMOVED,
            resolving=lambda entries: entries.pop(name, None),
        )

    async def update(self, name: str, keys: PairingKeys) -> None:
        """Store the keys of a (re-)pairing with `name`, replacing any previous keys."""
        now = self._clock()
        self._write(
            f"INSERT INTO {self._table} (address, keys, created, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (address) DO UPDATE SET keys = excluded.keys, updated = excluded.updated",
            (name, json.dumps(keys.to_dict(), sort_keys=True), now, now),
            durability.BOND_STORED,
            resolving=lambda entries: _set_resolving(entries, name, keys),
        )

    async def get(self, name: str) -> PairingKeys | None:
        """The keys bonded with `name`, or None if there is no bond."""
        row = self._connection.execute(
            f"SELECT keys FROM {self._table} WHERE address = ?", (name,)
        ).fetchone()
        return None if row is None else _keys_from_json(row[0])

    async def get_all(self) -> list[tuple[str, PairingKeys]]:
        """All bonds, oldest first (a stable order for listings and resolving lists)."""
        return [(address, _keys_from_json(text)) for address, text, _ in self._rows()]

    async def get_resolving_keys(self) -> list[tuple[bytes, hci.Address]]:
        """(IRK, identity address) of every bond that has an IRK, as `KeyStore`'s, oldest first.

        Bumble rebuilds its address resolver from this after every pairing, and `KeyStore`'s
        version parses every bond's JSON: 22 ms with 1,000 bonds, inside the pairing (issue 13:
        pairing cost flat from 1 to 1,000 bonds). The list is kept from one call to the next and
        follows this key store's own committed writes one bond at a time; it is read again from
        the table (SQLite picking the two fields out of the JSON) after a write inside a
        caller's transaction, which may still roll back, and after another connection changed
        the file (`PRAGMA data_version`).
        """
        version = int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        if self._resolving is None or version != self._resolving_version:
            rows = self._connection.execute(
                f"SELECT address, json_extract(keys, '$.irk.value'),"
                f" json_extract(keys, '$.address_type') FROM {self._table}"
                " WHERE json_extract(keys, '$.irk.value') IS NOT NULL ORDER BY created, address"
            )
            entries = {
                str(address): (bytes.fromhex(irk), _identity(str(address), kind))
                for address, irk, kind in rows
            }
            if self._connection.in_transaction:
                return list(entries.values())
            self._resolving, self._resolving_version = entries, version
        return list(self._resolving.values())

    async def delete_all(self) -> None:
        """Forget every bond in one transaction (a factory reset never stops half-way)."""
        self._write(f"DELETE FROM {self._table}", (), durability.BOND_REMOVED, resolving=dict.clear)

    def list_bonds(self) -> list[BondInfo]:
        """The bonded peers without their keys, oldest first, for the paired-phone list."""
        bonds = []
        for address, text, created in self._rows():
            keys = _keys_from_json(text)
            ltks = (keys.ltk, keys.ltk_central, keys.ltk_peripheral)
            authenticated = any(key is not None and key.authenticated for key in ltks)
            bonds.append(BondInfo(address=address, authenticated=authenticated, created=created))
        return bonds

    def damaged(self) -> list[tuple[str, str]]:
        """(address, what is wrong) of every row Bumble could not load when a device powers on
        with this key store: read them all at open, so a damaged file fails there and says
        which row, not later inside the Bluetooth stack."""
        rows = self._connection.execute(f"SELECT address, keys, created FROM {self._table}")
        return [
            (str(address), problem)
            for address, keys, created in rows
            if (problem := bond_problem(address, keys, created)) is not None
        ]

    def _rows(self) -> list[tuple[str, str, float]]:
        cursor = self._connection.execute(
            f"SELECT address, keys, created FROM {self._table} ORDER BY created, address"
        )
        return [(str(a), str(k), float(c)) for a, k, c in cursor.fetchall()]

    def _write(
        self,
        sql: str,
        params: tuple[Any, ...],
        level: Durability,
        *,
        notify: bool = True,
        resolving: Callable[[dict[str, tuple[bytes, hci.Address]]], object] | None = None,
    ) -> None:
        outer = self._connection.in_transaction
        entries, self._resolving = self._resolving, None  # whatever happens, until it succeeds
        if outer:
            self._connection.execute(sql, params)
        else:
            with synchronous(self._connection, level):
                try:
                    self._connection.execute(sql, params)
                    self._connection.commit()
                except BaseException:
                    if self._connection.in_transaction:
                        self._connection.rollback()
                    raise
            if entries is not None and resolving is not None:
                resolving(entries)
                self._resolving = entries
        if notify and self.on_change is not None:
            self.on_change()


@contextmanager
def synchronous(connection: sqlite3.Connection, level: Durability) -> Iterator[None]:
    """Commit what the block writes at `level`, then put the connection's level back.

    SQLite refuses to change the level inside a transaction, so this wraps the whole of one;
    a SYNCED block on a FULL connection costs nothing extra.
    """
    before = int(connection.execute("PRAGMA synchronous").fetchone()[0])
    wanted = _LEVELS[level]
    if (before >= wanted) if level is Durability.SYNCED else (before <= wanted):
        yield
        return
    connection.execute(f"PRAGMA synchronous = {wanted}")
    try:
        yield
    finally:
        connection.execute(f"PRAGMA synchronous = {before}")


_LEVELS = {Durability.SYNCED: 2, Durability.ORDERED: 1}
"""SQLite's numbers for the levels (PRAGMA synchronous reads back a number)."""


def _identity(address: str, kind: int | None) -> hci.Address:
    return hci.Address(
        address, hci.AddressType.RANDOM_DEVICE if kind is None else hci.AddressType(kind)
    )


def _set_resolving(
    entries: dict[str, tuple[bytes, hci.Address]], name: str, keys: PairingKeys
) -> None:
    """Follow `update(name, keys)` in the resolving list (a replaced bond keeps its place)."""
    if keys.irk is None:
        entries.pop(name, None)
    else:
        entries[name] = (keys.irk.value, _identity(name, keys.address_type))


def bond_problem(address: Any, keys: Any, created: Any) -> str | None:
    """What is wrong with one stored bond row, or None when it reads back as Bumble reads it."""
    try:
        hci.Address(str(address))
        float(created)
        parsed = _keys_from_json(keys)
        for key in (parsed.ltk, parsed.ltk_central, parsed.ltk_peripheral, parsed.irk, parsed.csrk):
            if key is not None and len(key.value) != BOND_KEY_LENGTH:
                return f"a key is {len(key.value)} bytes, not {BOND_KEY_LENGTH}"
    except DAMAGED_VALUE as error:
        return f"{type(error).__name__}: {error}"
    return None


def _keys_from_json(text: str) -> PairingKeys:
    return PairingKeys.from_dict(json.loads(text))


def open_keystore_file(path: str | os.PathLike[str]) -> SqliteKeyStore:
    """Open (creating if missing) a bonds-only SQLite file, e.g. the phone's own bonds.

    WAL keeps every commit whole; a new bond is not fsynced (a power cut may lose it: the phone
    pairs again), a removal is (core.durability). The returned key store owns the connection,
    so `close()` closes it.
    """
    try:
        connection = sqlite3.connect(Path(path), isolation_level=None)
    except sqlite3.Error as error:
        raise KeyStoreError(
            f"cannot open the bonds file {path}: {error}; check the path and its permissions"
        ) from error
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        store = SqliteKeyStore(connection)
        damaged = store.damaged()
    except sqlite3.DatabaseError as error:
        connection.close()
        raise KeyStoreError(
            f"{path} is not a usable bonds database: {error}; move it aside to start with no"
            " bonds (every charger must then be paired again)"
        ) from error
    except BaseException:
        connection.close()
        raise
    store._owns_connection = True
    if damaged:
        store.close()
        address, problem = damaged[0]
        raise KeyStoreError(
            f"{path} holds a damaged bond for {address} ({problem}); delete that row of table "
            "bonds (that charger must then be paired again), or move the file aside to start "
            "with no bonds"
        )
    return store
