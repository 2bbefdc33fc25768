"""A raw GATT client of the charger: what a bare Bumble central reads and writes, with the ATT
error codes kept.

The phone client (`chargepin.phone.client`) turns refusals into exceptions; the lab and the
access tests measure the refusals themselves (docs/PROTOCOL.md, access rules), so here a read
answers the value or the ATT error code, and a write None or the code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from bumble import att, gatt, hci
from bumble.core import UUID
from bumble.device import Connection, Peer
from bumble.gatt_client import AttributeProxy

from chargepin.core import protocol
from chargepin.phone.client import Phone

T = TypeVar("T")

CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR


@dataclass(frozen=True)
class GattTable:
    """Every attribute of the charger's server, as a client discovers it."""

    attributes: tuple[AttributeProxy[bytes], ...]

    def value(self, uuid: UUID | str) -> AttributeProxy[bytes]:
        """The (only) attribute of type `uuid`: a characteristic value."""
        wanted = UUID(uuid) if isinstance(uuid, str) else uuid
        (found,) = (a for a in self.attributes if a.type == wanted)
        return found

    def cccd_of(self, value: AttributeProxy[bytes] | UUID | str) -> AttributeProxy[bytes]:
        """The CCCD among the descriptors that follow a characteristic's value (given as the
        attribute or its type) (Core spec Vol 3 Part G 3.3.3)."""
        if not isinstance(value, AttributeProxy):
            value = self.value(value)
        for attribute in self.attributes:
            if attribute.handle <= value.handle:
                continue
            if attribute.type == CCCD:
                return attribute
            if not _is_descriptor(attribute):
                break
        raise LookupError(f"no CCCD after handle {value.handle}")

    def writable_by_design(self) -> set[int]:
        """Handles a client may write: the admin, control and presence points and the two
        CCCDs."""
        service_changed = self.value(gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC)
        return {
            self.value(protocol.ADMIN_UUID).handle,
            self.value(protocol.CONTROL_UUID).handle,
            self.value(protocol.PRESENCE_UUID).handle,
            self.cccd_of(self.value(protocol.STATUS_UUID)).handle,
            self.cccd_of(service_changed).handle,
        }


def _is_descriptor(attribute: AttributeProxy[bytes]) -> bool:
    """Descriptor types are 0x29xx (Assigned Numbers 3.7)."""
    raw = attribute.type.to_bytes()
    return len(raw) == 2 and raw[1] == 0x29


@dataclass(frozen=True)
class RawGattClient:
    """One GATT client link to the charger and the attributes it discovered."""

    connection: Connection
    peer: Peer
    table: GattTable
    answer_within: float | None = None
    """Seconds one read or write may take (TimeoutError after); None: Bumble's own 30 s."""

    @classmethod
    async def discover(
        cls, connection: Connection, peer: Peer | None = None, answer_within: float | None = None
    ) -> RawGattClient:
        """Discover the whole attribute table over `connection` (on `peer`, if it has one)."""
        peer = peer if peer is not None else Peer(connection)
        table = GattTable(tuple(await peer.discover_attributes()))
        return cls(connection, peer, table, answer_within)

    @property
    def attributes(self) -> tuple[AttributeProxy[bytes], ...]:
        return self.table.attributes

    def value(self, uuid: UUID | str) -> AttributeProxy[bytes]:
        return self.table.value(uuid)

    def cccd_of(self, value: AttributeProxy[bytes] | UUID | str) -> AttributeProxy[bytes]:
        return self.table.cccd_of(value)

    async def read(self, attribute: AttributeProxy[bytes] | int) -> bytes | int:
        """The value, or the ATT error code the charger answered."""
        try:
            return bytes(await self._bounded(self.peer.read_value(attribute)))
        except att.ATT_Error as error:
            return int(error.error_code)

    async def write(
        self, attribute: AttributeProxy[bytes] | int, value: bytes, with_response: bool = True
    ) -> int | None:
        """The ATT error code the charger answered, or None when it accepted the write (a Write
        Command, `with_response=False`, gets no answer: None)."""
        try:
            await self._bounded(
                self.peer.write_value(attribute, value, with_response=with_response)
            )
        except att.ATT_Error as error:
            return int(error.error_code)
        return None

    async def _bounded(self, answer: Awaitable[T]) -> T:
        if self.answer_within is None:
            return await answer
        return await asyncio.wait_for(answer, self.answer_within)


async def connect_unpaired(
    phone: Phone, serial: str, answer_within: float | None = None
) -> RawGattClient:
    """Connect to the charger `serial` heard advertising and discover its table, nothing more:
    no pairing, no encryption (what a stranger in range does)."""
    found = await phone.find(serial)  # connect only to a charger heard advertising
    connection = await phone.device.connect(
        hci.Address(found.address), own_address_type=hci.OwnAddressType.RANDOM
    )
    peer = Peer(connection)
    await peer.request_mtu(protocol.PREFERRED_MTU)
    return await RawGattClient.discover(connection, peer, answer_within)
