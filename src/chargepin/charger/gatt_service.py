"""The charger's GATT service: the attribute table and its access rules (docs/PROTOCOL.md).

Bumble enforces none of the READABLE/WRITEABLE flags and answers no read of a value without a
read callback (notes/bumble.md, "GATT"), so every characteristic here has explicit read and
write callbacks, the CCCD of the status characteristic is our own protected one, and
`freeze_static_attributes` makes every other attribute of the server read-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bumble import att, gatt, utils
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
    """The chargepin service with its seven characteristics and the protected CCCD."""
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


async def _refuse_write(_bearer: att.Bearer, _value: bytes) -> None:
    raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)


def harden_server(device: Device) -> None:
    """Close the holes Bumble's GATT server leaves open (notes/bumble.md, "GATT").

    - Attributes with a plain value, or a callback value without a write callback (Database
      Hash), are written by Bumble on any Write Request or never answered: they now refuse
      with Write Not Permitted and keep their value.
    - CCCDs Bumble added (Service Changed) store any value: they now take only valid ones.
    - Read Multiple (Variable) Requests naming a protected attribute were never answered (the
      handlers assume every attribute is world-readable): they now get the ATT error.
    - A Write Command (no response) to a protected attribute logged a traceback per packet:
      now it is dropped quietly, as the spec says for commands.
    """
    server = device.gatt_server
    characteristic: Any = None
    for attribute in server.attributes:
        if isinstance(attribute, gatt.Characteristic):
            characteristic = attribute
        value = attribute.value
        if isinstance(value, att.AttributeValue | att.AttributeValueV2):
            if value._write is None:
                attribute.write_value = _refuse_write  # type: ignore[method-assign,assignment]
            elif (
                attribute.type == gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
                and characteristic is not None
            ):
                attribute.write_value = _validated_cccd(  # type: ignore[method-assign]
                    attribute.write_value, characteristic.properties
                )
            continue
        attribute.write_value = _refuse_write  # type: ignore[method-assign,assignment]
    for name in ("on_att_read_multiple_request", "on_att_read_multiple_variable_request"):
        setattr(server, name, _answering_att_errors(server, name))
    server.on_att_write_command = _quiet_write_command(server)


def _validated_cccd(write: Any, properties: gatt.Characteristic.Properties) -> Any:
    async def validated(bearer: att.Bearer, value: bytes) -> None:
        check_cccd_value(value, properties)
        await write(bearer, value)

    return validated


def _answering_att_errors(server: Any, name: str) -> Callable[[att.Bearer, Any], None]:
    inner = getattr(type(server), name).__wrapped__  # Bumble's run_in_task keeps it

    def handler(bearer: att.Bearer, request: Any) -> None:
        async def run() -> None:
            try:
                await inner(server, bearer, request)
            except att.ATT_Error as error:
                server.send_response(
                    bearer,
                    att.ATT_Error_Response(
                        request_opcode_in_error=request.op_code,
                        attribute_handle_in_error=error.att_handle,
                        error_code=error.error_code,
                    ),
                )

        utils.AsyncRunner.spawn(run())  # type: ignore[no-untyped-call]

    return handler


def _quiet_write_command(server: Any) -> Callable[[att.Bearer, Any], None]:
    def handler(bearer: att.Bearer, request: Any) -> None:
        async def run() -> None:
            attribute = server.get_attribute(request.attribute_handle)
            if attribute is None:
                return
            try:
                await attribute.write_value(bearer, request.attribute_value)
            except att.ATT_Error:
                return  # Vol 3 Part F 3.4.5.3: no response, no error for a command

        utils.AsyncRunner.spawn(run())  # type: ignore[no-untyped-call]

    return handler
