"""The charger's GATT service: the attribute table and its access rules (docs/PROTOCOL.md).

Bumble enforces none of the READABLE/WRITEABLE flags and answers no read of a value without a
read callback (notes/bumble.md, "GATT"), so every characteristic here has explicit read and
write callbacks, the CCCD of the status characteristic is our own protected one, and
`freeze_static_attributes` makes every other attribute of the server read-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bumble import att, gatt
from bumble.device import Connection, Device

from chargepin.core import protocol


class ChargerHandlers(Protocol):
    """What the GATT table calls; the daemon implements it. Every method may raise ATT_Error."""

    def read_info(self, connection: Connection) -> bytes: ...

    def read_challenge(self, connection: Connection) -> bytes: ...

    async def write_admin(self, connection: Connection, value: bytes) -> None: ...

    async def read_admin_result(self, connection: Connection) -> bytes: ...

    async def read_status(self, connection: Connection) -> bytes: ...

    async def write_control(self, connection: Connection, value: bytes) -> None: ...

    async def read_bond(self, connection: Connection) -> bytes: ...
    def write_presence(self, connection: Connection, value: bytes) -> None: ...

    def read_presence(self, connection: Connection) -> bytes: ...

    async def require_protected(self, connection: Connection) -> None: ...


def _deny_read(_connection: Any) -> bytes:
    raise att.ATT_Error(att.ErrorCode.READ_NOT_PERMITTED)


def _deny_write(_connection: Any, _value: bytes) -> None:
    raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)


def _characteristic(
    uuid: str,
    properties: gatt.Characteristic.Properties,
    read: Callable[[Connection], bytes] | Callable[[Connection], Awaitable[bytes]] | None,
    write: (
        Callable[[Connection, bytes], None] | Callable[[Connection, bytes], Awaitable[None]] | None
    ),
    descriptors: list[gatt.Descriptor] | None = None,
) -> gatt.Characteristic[bytes]:
    permissions = att.Attribute.Permissions.READABLE | att.Attribute.Permissions.WRITEABLE
    return gatt.Characteristic(
        uuid,
        properties,
        permissions,
        att.AttributeValue(read=read or _deny_read, write=write or _deny_write),
        descriptors=descriptors or [],
    )


def build_service(device: Device, handlers: ChargerHandlers) -> gatt.Service:
    """The chargepin service with its characteristics and the protected CCCD."""
    props = gatt.Characteristic.Properties

    def cccd_read(bearer: att.Bearer, characteristic: gatt.Characteristic[bytes]) -> Any:
        async def read() -> bytes:
            await handlers.require_protected(_connection_of(bearer))
            return device.gatt_server.read_cccd(bearer, characteristic)

        return read()

    def cccd_write(
        bearer: att.Bearer, value: bytes, characteristic: gatt.Characteristic[bytes]
    ) -> Any:
        async def write() -> None:
            await handlers.require_protected(_connection_of(bearer))
            check_cccd_value(value, characteristic.properties)
            device.gatt_server.write_cccd(bearer, characteristic, value)

        return write()

    status = _characteristic(
        protocol.STATUS_UUID, props.READ | props.NOTIFY, handlers.read_status, None
    )
    status.descriptors = [
        gatt.Descriptor(
            gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
            att.Attribute.Permissions.READABLE | att.Attribute.Permissions.WRITEABLE,
            att.AttributeValueV2(
                read=lambda bearer: cccd_read(bearer, status),
                write=lambda bearer, value: cccd_write(bearer, value, status),
            ),
        )
    ]
    admin_result = _characteristic(
        protocol.ADMIN_RESULT_UUID, props.READ, handlers.read_admin_result, None
    )
    return gatt.Service(
        protocol.SERVICE_UUID,
        [
            _characteristic(protocol.INFO_UUID, props.READ, handlers.read_info, None),
            _characteristic(protocol.CHALLENGE_UUID, props.READ, handlers.read_challenge, None),
            _characteristic(protocol.ADMIN_UUID, props.WRITE, None, handlers.write_admin),
            admin_result,
            status,
            _characteristic(protocol.CONTROL_UUID, props.WRITE, None, handlers.write_control),
            _characteristic(protocol.BOND_UUID, props.READ, handlers.read_bond, None),
            _characteristic(
                protocol.PRESENCE_UUID,
                props.READ | props.WRITE,
                handlers.read_presence,
                handlers.write_presence,
            ),
        ],
    )


def _connection_of(bearer: att.Bearer) -> Connection:
    if att.is_enhanced_bearer(bearer):
        return bearer.connection
    return bearer


def check_cccd_value(value: bytes, properties: gatt.Characteristic.Properties) -> None:
    """A CCCD takes 2 octets enabling only what the characteristic offers (Vol 3 Part G 3.3.3.3)."""
    if len(value) != 2:
        raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
    allowed = 0
    if properties & gatt.Characteristic.Properties.NOTIFY:
        allowed |= 0x01
    if properties & gatt.Characteristic.Properties.INDICATE:
        allowed |= 0x02
    if value[1] != 0 or value[0] & ~allowed:
        raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
