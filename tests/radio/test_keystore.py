"""SqliteKeyStore against a real SQLite file and real Bumble PairingKeys."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from bumble import hci
from bumble.keys import KeyStore, PairingKeys

from chargepin.radio.keystore import (
    BondInfo,
    KeyStoreError,
    SqliteKeyStore,
    open_keystore_file,
)

PHONE_A = "F1:22:33:44:55:66"
PHONE_B = "D2:AA:BB:CC:DD:EE"


def pairing_keys(seed: int, *, authenticated: bool = True) -> PairingKeys:
    """Keys as Bumble's SMP hands them over after an LE Secure Connections pairing."""
    return PairingKeys(
        address_type=hci.AddressType.RANDOM_DEVICE,
        ltk=PairingKeys.Key(value=bytes([seed]) * 16, authenticated=authenticated),
        irk=PairingKeys.Key(value=bytes([seed + 1]) * 16, authenticated=authenticated),
    )


class Clock:
    """A settable clock for the created/updated timestamps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    yield conn
    conn.close()


async def test_round_trip_of_real_pairing_keys(connection: sqlite3.Connection) -> None:
    store = SqliteKeyStore(connection)
    keys = PairingKeys(
        address_type=hci.AddressType.RANDOM_DEVICE,
        ltk=PairingKeys.Key(value=bytes(range(16)), authenticated=True),
        ltk_central=PairingKeys.Key(value=b"\x01" * 16, ediv=0x1234, rand=b"\x02" * 8),
        irk=PairingKeys.Key(value=b"\x03" * 16),
        csrk=PairingKeys.Key(value=b"\x04" * 16),
    )
    await store.update(PHONE_A, keys)
    assert await store.get(PHONE_A) == keys
    assert await store.get(PHONE_B) is None


async def test_update_replaces_the_previous_bond(connection: sqlite3.Connection) -> None:
    clock = Clock()
    store = SqliteKeyStore(connection, clock=clock)
    await store.update(PHONE_A, pairing_keys(1))
    clock.now = 2000.0
    # A re-pairing that distributes no IRK must not keep the old one.
    fresh = PairingKeys(ltk=PairingKeys.Key(value=b"\x09" * 16, authenticated=True))
    await store.update(PHONE_A, fresh)
    assert await store.get(PHONE_A) == fresh
    assert store.list_bonds() == [BondInfo(PHONE_A, authenticated=True, created=1000.0)]


async def test_delete_and_delete_all(connection: sqlite3.Connection) -> None:
    store = SqliteKeyStore(connection)
    await store.update(PHONE_A, pairing_keys(1))
    await store.update(PHONE_B, pairing_keys(5))
    await store.delete(PHONE_A)
    assert await store.get(PHONE_A) is None
    assert [name for name, _ in await store.get_all()] == [PHONE_B]
    await store.delete(PHONE_A)  # forgetting twice is not an error
    await store.delete_all()
    assert await store.get_all() == []


async def test_get_all_is_oldest_first(connection: sqlite3.Connection) -> None:
    clock = Clock()
    store = SqliteKeyStore(connection, clock=clock)
    await store.update(PHONE_A, pairing_keys(1))
    clock.now += 1
    await store.update(PHONE_B, pairing_keys(5))
    assert await store.get_all() == [(PHONE_A, pairing_keys(1)), (PHONE_B, pairing_keys(5))]


async def test_list_bonds_reports_authentication(connection: sqlite3.Connection) -> None:
    clock = Clock()
    store = SqliteKeyStore(connection, clock=clock)
    await store.update(PHONE_A, pairing_keys(1, authenticated=False))
    clock.now = 1001.0
    legacy = PairingKeys(
        ltk_peripheral=PairingKeys.Key(value=b"\x07" * 16, authenticated=True, ediv=1)
    )
    await store.update(PHONE_B, legacy)
    assert store.list_bonds() == [
        BondInfo(PHONE_A, authenticated=False, created=1000.0),
        BondInfo(PHONE_B, authenticated=True, created=1001.0),
    ]


async def test_bonds_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "phone-bonds.db"
    store = open_keystore_file(path)
    await store.update(PHONE_A, pairing_keys(1))
    store.close()

    reopened = open_keystore_file(path)
    try:
        assert await reopened.get(PHONE_A) == pairing_keys(1)
        mode = reopened.connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        reopened.close()


async def test_writes_are_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "bonds.db"
    store = open_keystore_file(path)
    try:
        await store.update(PHONE_A, pairing_keys(1))
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT address FROM bonds").fetchall() == [(PHONE_A,)]
        finally:
            other.close()
    finally:
        store.close()


async def test_resolving_keys_come_from_the_base_class(connection: sqlite3.Connection) -> None:
    store = SqliteKeyStore(connection)
    await store.update(PHONE_A, pairing_keys(1))
    await store.update(PHONE_B, PairingKeys(ltk=PairingKeys.Key(value=b"\x05" * 16)))
    resolving = await store.get_resolving_keys()
    assert resolving == [(b"\x02" * 16, hci.Address(PHONE_A, hci.AddressType.RANDOM_DEVICE))]


async def test_on_change_runs_after_each_write(connection: sqlite3.Connection) -> None:
    seen: list[int] = []
    store = SqliteKeyStore(connection)
    store.on_change = lambda: seen.append(
        connection.execute("SELECT COUNT(*) FROM bonds").fetchone()[0]
    )
    await store.update(PHONE_A, pairing_keys(1))
    await store.update(PHONE_B, pairing_keys(5))
    await store.delete(PHONE_A)
    await store.delete_all()
    assert seen == [1, 2, 1, 0]


async def test_a_write_inside_a_caller_transaction_commits_with_it(
    connection: sqlite3.Connection,
) -> None:
    store = SqliteKeyStore(connection)
    connection.execute("BEGIN IMMEDIATE")
    await store.update(PHONE_A, pairing_keys(1))
    assert connection.in_transaction
    connection.execute("ROLLBACK")
    assert await store.get(PHONE_A) is None


def test_table_name_must_be_an_identifier(connection: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="identifier"):
        SqliteKeyStore(connection, table="bonds; DROP TABLE x")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bonds.db"
    path.write_bytes(b"not a database at all, just some bytes " * 100)
    with pytest.raises(KeyStoreError, match="is not a usable bonds database"):
        open_keystore_file(path)


@pytest.mark.parametrize(
    ("keys", "created"),
    [
        ("not json", 1.0),
        ('{"address_type": 1, "ltk": {"value": "00", "authenticated": true}}', 1.0),
        ("[]", 1.0),
        ("{}", "yesterday"),
    ],
)
async def test_a_damaged_bond_row_is_refused_at_open_naming_it(
    tmp_path: Path, keys: str, created: object
) -> None:
    """A phone's bonds file with a garbage row fails at open, saying which row and what to do,
    instead of crashing the Bluetooth stack when it loads the keys (the charger's store has the
    same check)."""
    path = tmp_path / "phone-bonds.db"
    store = open_keystore_file(path)
    await store.update(PHONE_A, pairing_keys(1))
    store.connection.execute(
        "INSERT INTO bonds (address, keys, created, updated) VALUES (?, ?, ?, 1)",
        (PHONE_B, keys, created),
    )
    store.close()
    with pytest.raises(KeyStoreError, match=f"damaged bond for {PHONE_B}.*delete that row"):
        open_keystore_file(path)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM bonds").fetchone()[0] == 2


async def test_resolving_keys_are_those_bumble_would_read(connection: sqlite3.Connection) -> None:
    """The JSON-free read of (IRK, identity address) gives what KeyStore's own, which parses
    every bond, gives: same keys, same addresses and types, same order, no IRK-less bond."""
    clock = Clock()
    store = SqliteKeyStore(connection, clock=clock)
    public = PairingKeys(
        address_type=hci.AddressType.PUBLIC_DEVICE, irk=PairingKeys.Key(value=b"\x07" * 16)
    )
    for address, keys in (
        (PHONE_B, pairing_keys(1)),
        (PHONE_A, pairing_keys(3)),
        ("C0:11:22:33:44:55", PairingKeys(ltk=PairingKeys.Key(value=b"\x05" * 16))),
        ("00:11:22:33:44:56", public),
        ("C1:11:22:33:44:57", PairingKeys(irk=PairingKeys.Key(value=b"\x09" * 16))),
    ):
        clock.now += 1
        await store.update(address, keys)

    ours = await store.get_resolving_keys()

    assert ours == await KeyStore.get_resolving_keys(store)
    assert [(irk[0], str(address), address.address_type) for irk, address in ours] == [
        (2, PHONE_B, hci.AddressType.RANDOM_DEVICE),
        (4, PHONE_A, hci.AddressType.RANDOM_DEVICE),
        (7, "00:11:22:33:44:56/P", hci.AddressType.PUBLIC_DEVICE),
        (9, "C1:11:22:33:44:57", hci.AddressType.RANDOM_DEVICE),
    ]


async def test_resolving_keys_follow_every_change(
    connection: sqlite3.Connection, tmp_path: Path
) -> None:
    """The list kept between calls follows updates, removals, a rolled-back transaction and
    another connection's commit: after each, what KeyStore's own reading of the table gives."""
    store = SqliteKeyStore(connection)

    async def check() -> None:
        assert await store.get_resolving_keys() == await KeyStore.get_resolving_keys(store)

    await store.update(PHONE_A, pairing_keys(1))
    await check()
    await store.update(PHONE_B, pairing_keys(3))
    await store.update(PHONE_A, pairing_keys(5))  # re-pairing: new IRK, same place
    await check()
    assert [irk[0] for irk, _ in await store.get_resolving_keys()] == [6, 4]
    await store.update(PHONE_B, PairingKeys(ltk=PairingKeys.Key(value=b"\x01" * 16)))  # no IRK
    await check()
    await store.delete(PHONE_A)
    await check()
    assert await store.get_resolving_keys() == []

    await store.update(PHONE_A, pairing_keys(7))
    connection.execute("BEGIN")
    await store.delete(PHONE_A)
    assert await store.get_resolving_keys() == []  # inside the transaction: what it sees
    connection.execute("ROLLBACK")
    await check()
    assert len(await store.get_resolving_keys()) == 1

    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        await SqliteKeyStore(other).update(PHONE_B, pairing_keys(9))
    finally:
        other.close()
    await check()
    assert len(await store.get_resolving_keys()) == 2
    await store.delete_all()
    await check()
