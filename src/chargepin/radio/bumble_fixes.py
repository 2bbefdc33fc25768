"""Every place chargepin reaches into Bumble's internals, in one module, for Bumble 0.0.236.

Each fix says what Bumble does, why that is not good enough for a charger, and which internal
it relies on. tests/radio/test_bumble_fixes.py fails when an upgrade moves an internal (the fix
would break) or closes the hole (the fix is no longer needed): read it before upgrading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bumble import att, gatt, hci, smp, utils
from bumble.device import Connection, Device
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

logger = logging.getLogger(__name__)

BUMBLE_VERSION = "0.0.236"
"""The Bumble release these fixes were written and tested against (pyproject.toml pins it)."""

# ------------------------------------------------------------------- SMP: the pairing gate

PairingRequestHook = Callable[[Connection, smp.SMP_Pairing_Request_Command], int | None]
FailureHook = Callable[[Connection, int], None]
CompleteHook = Callable[[Connection, bool], None]


def guard_pairing(
    device: Device,
    on_request: PairingRequestHook,
    on_failure: FailureHook,
    on_complete: CompleteHook | None = None,
) -> None:
    """Ask `on_request` before serving a Pairing Request, and `on_failure` before a Pairing
    Failed PDU of ours leaves; tell `on_complete` (connection, authenticated) the moment a
    responder holds every key of a pairing.

    Bumble's PairingDelegate.accept() can only refuse with 0x05; a lockout must answer 0x09
    Repeated Attempts and a Just Works refusal 0x03 (Core spec Vol 3 Part H 3.5.5), so the
    session class Bumble makes per link (`Device.smp_session_proxy`) is replaced by a subclass
    overriding `on_smp_pairing_request_command`. `on_request` returns the SMP error to refuse
    (an SMP reason code; the link is then the caller's to drop), or None to serve the request.

    Bumble sends its Pairing Failed PDU first and reports the failure after: a charger killed in
    between forgot an attempt whose answer the phone already had (`chargepin lab crash-loop`
    caught it). Overriding `send_pairing_failed` lets the charger count it first.

    A responder's pairing is complete when the initiator's last key arrives; Bumble then stores
    the keys and reports the pairing in a task it cancels if the link drops first. A phone that
    disconnects as soon as its `pair()` returns can have its Disconnection Complete read in the
    same batch as that key: the task never ran, so the charger kept no bond and counted the
    good pairing as an aborted attempt towards the lockout (tests/cli/test_install_by_role.py
    caught the missing bond). The responder now reports completion at once (`on_complete`) and
    stores the keys in a task the disconnection does not cancel.
    """

    class GuardedSession(smp.Session):
        def on_smp_pairing_request_command(self, command: smp.SMP_Pairing_Request_Command) -> None:
            refusal = on_request(self.connection, command)
            if refusal is None:
                super().on_smp_pairing_request_command(command)
            else:
                self.send_pairing_failed(smp.ErrorCode(refusal))

        def send_pairing_failed(self, error: smp.ErrorCode) -> None:
            on_failure(self.connection, error)
            super().send_pairing_failed(error)

        def on_peer_key_distribution_complete(self) -> None:
            if self.is_initiator:
                super().on_peer_key_distribution_complete()
                return
            # Every key is exchanged: the pairing is done whatever the link does next.
            if on_complete is not None:
                on_complete(self.connection, self.pairing_method != smp.PairingMethod.JUST_WORKS)
            task = asyncio.get_running_loop().create_task(self.on_pairing())
            _completions.add(task)
            task.add_done_callback(_completed)

    device.smp_session_proxy = GuardedSession


_completions: set[asyncio.Task[None]] = set()
"""Responders' key storage tasks, held until they end (the loop keeps only weak references)."""


def _completed(task: asyncio.Task[None]) -> None:
    _completions.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("storing a pairing's keys failed", exc_info=task.exception())


# -------------------------------------------------------------------- GATT: the open holes


async def _refuse_write(_bearer: att.Bearer, _value: bytes) -> None:
    raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)


CccdCheck = Callable[[bytes, gatt.Characteristic.Properties], None]


def harden_gatt_server(device: Device, check_cccd: CccdCheck) -> None:
    """Close the holes Bumble's GATT server leaves open (notes/bumble.md, "GATT").

    - Attributes with a plain value, or a callback value without a write callback (Database
      Hash), are written by Bumble on any Write Request or never answered: they now refuse
      with Write Not Permitted and keep their value (relies on `AttributeValue._write`).
    - CCCDs Bumble added (Service Changed) store any value: they now take only what
      `check_cccd` allows.
    - Read Multiple (Variable) Requests naming a protected attribute were never answered (the
      handlers assume every attribute is world-readable): they now get the ATT error (relies on
      the handler's `__wrapped__`, which Bumble's `AsyncRunner.run_in_task` keeps).
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
                    attribute.write_value, characteristic.properties, check_cccd
                )
            continue
        attribute.write_value = _refuse_write  # type: ignore[method-assign,assignment]
    for name in READ_MULTIPLE_HANDLERS:
        setattr(server, name, _answering_att_errors(server, name))
    server.on_att_write_command = _quiet_write_command(server)


READ_MULTIPLE_HANDLERS = ("on_att_read_multiple_request", "on_att_read_multiple_variable_request")


def _validated_cccd(
    write: Any, properties: gatt.Characteristic.Properties, check_cccd: CccdCheck
) -> Any:
    async def validated(bearer: att.Bearer, value: bytes) -> None:
        check_cccd(value, properties)
        await write(bearer, value)

    return validated


def _answering_att_errors(server: Any, name: str) -> Callable[[att.Bearer, Any], None]:
    inner = getattr(type(server), name).__wrapped__

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


class IrkResolver(smp.AddressResolver):
    """Bumble's host-side resolver, with one AES-128 context per bonded IRK kept ready.

    Bumble resolves a resolvable private address (Vol 6 Part B 1.3.2.3) by trying `ah()` with
    each bond's IRK in turn, building a fresh AES context every time: about 10-40 us per bond
    here, so 10-40 ms per connection from a phone using privacy when the charger holds 1,000
    bonds. Same walk, same answer, with the contexts built once per refresh of the list.
    """

    def __init__(self, resolving_keys: Any) -> None:
        super().__init__(resolving_keys)
        self._contexts = [
            (Cipher(algorithms.AES(irk[::-1]), modes.ECB()).encryptor(), address)
            for irk, address in resolving_keys
        ]

    def resolve(self, address: hci.Address) -> hci.Address | None:
        address_bytes = bytes(address)
        hash_part = address_bytes[0:3]
        # ah(k, r) = e(k, r || 0^104)[0:3], e in Bluetooth's little-endian octet order.
        block = (address_bytes[3:6] + bytes(13))[::-1]
        for context, resolved in self._contexts:
            if context.update(block)[::-1][0:3] == hash_part:
                kind = (
                    hci.Address.PUBLIC_IDENTITY_ADDRESS
                    if resolved.address_type == hci.Address.PUBLIC_DEVICE_ADDRESS
                    else hci.Address.RANDOM_IDENTITY_ADDRESS
                )
                return hci.Address(address=str(resolved), address_type=kind)
        return None


class ResolvingDevice(Device):
    """A Device whose host-side address resolver is `IrkResolver` (rebuilt whenever Bumble
    refreshes its resolving list: at power-on and after each pairing)."""

    async def refresh_resolving_list(self) -> None:
        await super().refresh_resolving_list()
        if self.address_resolver is not None:
            self.address_resolver = IrkResolver(self.address_resolver.resolving_keys)
