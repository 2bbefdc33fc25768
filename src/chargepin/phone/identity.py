"""The phone's own Bluetooth identity, kept beside its bonds so chargers recognise it again."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from chargepin.core.addresses import random_static_address
from chargepin.radio.keystore import SqliteKeyStore


@dataclass(frozen=True)
class PhoneIdentity:
    """Identity address (random static) and IRK: chargers key our bond by the address."""

    address: str
    irk: bytes
    name: str = "chargepin phone"


def load_identity(bonds: SqliteKeyStore, name: str = "chargepin phone") -> PhoneIdentity:
    """The identity stored in the bonds file, created on first use."""
    db = bonds.connection
    with db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS phone_identity "
            "(id INTEGER PRIMARY KEY CHECK (id = 1), address TEXT NOT NULL, irk BLOB NOT NULL)"
        )
        row = db.execute("SELECT address, irk FROM phone_identity WHERE id = 1").fetchone()
        if row is None:
            row = (random_static_address(), secrets.token_bytes(16))
            db.execute("INSERT INTO phone_identity (id, address, irk) VALUES (1, ?, ?)", row)
    return PhoneIdentity(address=str(row[0]), irk=bytes(row[1]), name=name)
