"""The phone's cache of each bonded charger's GATT database, keyed by its Database Hash.

A bonded reconnect then skips the MTU-independent part of discovery (services, characteristics,
descriptors: five ATT round trips on the chargepin service) and reads the Database Hash and the
open info in one Read Multiple Variable Length Request (Core spec Vol 3 Part F 3.4.4.11). The
cached handles are trusted only on a link encrypted with the bond of that charger and only once
the hash read through them equals the cached one (Vol 3 Part G 2.5.2.1, robust caching): a
changed database (a firmware update), a failed read or a damaged row means discovery again,
never a read or write through a stale handle.

Stored in the phone's bonds file (a table beside the bonds and the phone's identity), one row per
charger identity address. A power cut while a row is written loses at most that row: the next
reconnect discovers again and writes it again; nothing else depends on it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from bumble import gatt
from bumble.core import UUID
from bumble.gatt_client import CharacteristicProxy, Client, DescriptorProxy

from chargepin.core import durability
from chargepin.radio.keystore import synchronous

logger = logging.getLogger(__name__)

HASH_SIZE = 16
"""The Database Hash is an AES-CMAC, 128 bits (Vol 3 Part G 7.3)."""

FORMAT = 1
"""The row format: a row of another format is ignored and rebuilt."""


class GattCacheDamaged(ValueError):
    """A cache row that does not decode as a cache (ignored and rebuilt, never trusted)."""


@dataclass(frozen=True)
class CachedCharacteristic:
    """What discovery found about one characteristic of the chargepin service."""

    uuid: str
    handle: int
    """The value handle."""
    end_group_handle: int
    properties: int
    cccd: int | None = None
    """The Client Characteristic Configuration descriptor's handle, for NOTIFY/INDICATE."""


@dataclass(frozen=True)
class GattCache:
    """A charger's database as discovered, and the hash it had then."""

    database_hash: bytes
    hash_handle: int
    characteristics: tuple[CachedCharacteristic, ...]

    def handle_of(self, uuid: str) -> int:
        for characteristic in self.characteristics:
            if characteristic.uuid == uuid:
                return characteristic.handle
        raise KeyError(uuid)

    def proxies(self, client: Client) -> dict[str, Any]:
        """Characteristic proxies as discovery would have built them, keyed by lower-case UUID."""
        found: dict[str, Any] = {}
        for cached in self.characteristics:
            proxy: CharacteristicProxy[bytes] = CharacteristicProxy(
                client, cached.handle, cached.end_group_handle, UUID(cached.uuid), cached.properties
            )
            if cached.cccd is not None:
                cccd_type = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
                proxy.descriptors = [DescriptorProxy(client, cached.cccd, cccd_type)]
                proxy.descriptors_discovered = True
            found[cached.uuid] = proxy
        return found

    def encode(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "hash": self.database_hash.hex(),
                "hash_handle": self.hash_handle,
                "characteristics": [
                    [c.uuid, c.handle, c.end_group_handle, c.properties, c.cccd]
                    for c in self.characteristics
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> GattCache:
        """The cache in a row; GattCacheDamaged for anything that is not exactly one."""
        try:
            data = json.loads(text)
            if data["format"] != FORMAT:
                raise GattCacheDamaged(f"format {data['format']!r}, expected {FORMAT}")
            database_hash = bytes.fromhex(data["hash"])
            characteristics = tuple(
                CachedCharacteristic(
                    _text(uuid).lower(),
                    _handle(handle),
                    _handle(end),
                    _octet(properties),
                    None if cccd is None else _handle(cccd),
                )
                for uuid, handle, end, properties, cccd in data["characteristics"]
            )
            cache = cls(database_hash, _handle(data["hash_handle"]), characteristics)
        except GattCacheDamaged:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise GattCacheDamaged(f"not a GATT cache row: {error}") from error
        if len(database_hash) != HASH_SIZE:
            raise GattCacheDamaged(f"database hash of {len(database_hash)} octets")
        return cache


def _handle(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0x0001 <= value <= 0xFFFF:
        raise GattCacheDamaged(f"attribute handle {value!r} out of range")
    return value


def _octet(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise GattCacheDamaged(f"properties {value!r} out of range")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise GattCacheDamaged(f"UUID {value!r} is not text")
    return value


class GattCacheStore:
    """The cache rows in the phone's bonds file (SQLite, the bonds' own connection)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS gatt_cache "
                "(address TEXT PRIMARY KEY, cache TEXT NOT NULL)"
            )

    def get(self, address: str) -> GattCache | None:
        """The cache for this charger, or None; a damaged row is logged and deleted."""
        row = self._db.execute(
            "SELECT cache FROM gatt_cache WHERE address = ?", (address.upper(),)
        ).fetchone()
        if row is None:
            return None
        try:
            return GattCache.decode(row[0] if isinstance(row[0], str) else "")
        except GattCacheDamaged as error:
            logger.warning("GATT cache of %s ignored and rebuilt: %s", address, error)
            self.delete(address)
            return None

    def put(self, address: str, cache: GattCache) -> None:
        """Store the cache (no write when the row already holds exactly this cache)."""
        text = cache.encode()
        row = self._db.execute(
            "SELECT cache FROM gatt_cache WHERE address = ?", (address.upper(),)
        ).fetchone()
        if row is not None and row[0] == text:
            return
        with synchronous(self._db, durability.GATT_CACHE), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO gatt_cache (address, cache) VALUES (?, ?)",
                (address.upper(), text),
            )

    def delete(self, address: str) -> None:
        with synchronous(self._db, durability.GATT_CACHE), self._db:
            self._db.execute("DELETE FROM gatt_cache WHERE address = ?", (address.upper(),))
