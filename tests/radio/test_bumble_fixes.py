"""The Bumble workarounds (chargepin.radio.bumble_fixes) against the Bumble we pin.

Each hole is shown open on a stock Bumble device and closed on a hardened one, over Bumble's
own virtual link: when an upgrade closes a hole these tests say the fix can go, and when it
moves an internal a fix relies on they fail before a charger ships with a broken fix.
"""

from __future__ import annotations

import asyncio
import secrets

import bumble
import pytest
from bumble import att, crypto, gatt, hci, smp
from bumble.device import Device, Peer
from bumble.gatt_server import Server
from bumble.testing.test_utils import TwoDevices

from chargepin.charger.gatt_service import check_cccd_value
from chargepin.core.addresses import random_static_address
from chargepin.radio.bumble_fixes import (
    BUMBLE_VERSION,
    READ_MULTIPLE_HANDLERS,
    IrkResolver,
    guard_pairing,
    harden_gatt_server,
)

ANSWER_WITHIN = 1.0
PLAIN_UUID = "2d6a0001-5c1b-4bb4-9a8e-7f9a3c3b7c01"
SECRET_UUID = "2d6a0002-5c1b-4bb4-9a8e-7f9a3c3b7c01"


def test_the_fixes_target_the_pinned_bumble() -> None:
    assert bumble.__version__ == BUMBLE_VERSION, (
        f"Bumble is {bumble.__version__}; radio/bumble_fixes.py was checked against "
        f"{BUMBLE_VERSION}: run this file, drop the fixes its tests call unnecessary, then move "
        "BUMBLE_VERSION"
    )


def test_the_internals_the_fixes_use_are_there() -> None:
    assert callable(smp.Session.on_smp_pairing_request_command)
    assert callable(smp.Session.send_pairing_failed)
    assert callable(smp.Session.on_peer_key_distribution_complete)
    assert asyncio.iscoroutinefunction(smp.Session.on_pairing)
    assert isinstance(Device.smp_session_proxy, property)
    assert Device.smp_session_proxy.fset is not None
    assert "_write" in vars(att.AttributeValue(write=None))
    for name in READ_MULTIPLE_HANDLERS:
        assert callable(getattr(Server, name).__wrapped__)


def test_bumble_still_sends_pairing_failed_before_it_reports_it() -> None:
    """Why `guard_pairing` hooks send_pairing_failed: a charger must count a failure before the
    phone hears of it, and Bumble's own order is the other way round."""
    order: list[str] = []

    class Recorder:
        def send_command(self, command: object) -> None:
            order.append("sent")

        def on_pairing_failure(self, reason: object) -> None:
            order.append("reported")

    smp.Session.send_pairing_failed(Recorder(), smp.ErrorCode.CONFIRM_VALUE_FAILED)  # type: ignore[arg-type]
    assert order == ["sent", "reported"], "Bumble reports first now: the hook may be unneeded"


def _table(device: Device) -> None:
    """A plain readable value (Bumble lets anyone write it) and one whose read is refused."""

    def refuse(_connection: object) -> bytes:
        raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_ENCRYPTION)

    props = gatt.Characteristic.Properties
    device.add_service(
        gatt.Service(
            "2d6a0000-5c1b-4bb4-9a8e-7f9a3c3b7c01",
            [
                gatt.Characteristic(
                    PLAIN_UUID, props.READ, att.Attribute.Permissions.READABLE, b"factory"
                ),
                gatt.Characteristic(
                    SECRET_UUID,
                    props.READ,
                    att.Attribute.Permissions.READABLE,
                    att.AttributeValue(read=refuse),
                ),
            ],
        )
    )


async def _connected(hardened: bool) -> tuple[TwoDevices, Peer]:
    devices = TwoDevices()
    _table(devices[1])
    if hardened:
        harden_gatt_server(devices[1], check_cccd_value)
    await devices.setup_connection()
    peer = Peer(devices.connections[0])
    await peer.discover_services()
    await peer.discover_characteristics()
    return devices, peer


@pytest.mark.parametrize("hardened", [False, True], ids=["stock", "hardened"])
async def test_a_plain_value_is_writable_unless_hardened(hardened: bool) -> None:
    _devices, peer = await _connected(hardened)  # kept: the link lives with them
    (plain,) = peer.get_characteristics_by_uuid(bumble.core.UUID(PLAIN_UUID))
    try:
        await asyncio.wait_for(
            peer.write_value(plain, b"stranger", with_response=True), ANSWER_WITHIN
        )
        refused = None
    except att.ATT_Error as error:
        refused = error.error_code
    if hardened:
        assert refused == att.ErrorCode.WRITE_NOT_PERMITTED
        assert await peer.read_value(plain) == b"factory"
    else:
        assert refused is None, "stock Bumble refuses writes now: drop that fix"
        assert await peer.read_value(plain) == b"stranger"


@pytest.mark.parametrize("hardened", [False, True], ids=["stock", "hardened"])
async def test_a_read_multiple_with_a_refused_read_is_answered_only_when_hardened(
    hardened: bool,
) -> None:
    _devices, peer = await _connected(hardened)  # kept: the link lives with them
    handles = [
        peer.get_characteristics_by_uuid(bumble.core.UUID(uuid))[0].handle
        for uuid in (PLAIN_UUID, SECRET_UUID)
    ]
    request = att.ATT_Read_Multiple_Request(set_of_handles=handles)
    try:
        response = await asyncio.wait_for(peer.gatt_client.send_request(request), ANSWER_WITHIN)
    except TimeoutError:
        assert not hardened, "the hardened server left a Read Multiple unanswered"
        return
    assert hardened, "stock Bumble answers now: drop the Read Multiple fix"
    assert response.op_code == att.Opcode.ATT_ERROR_RESPONSE
    assert response.error_code == att.ErrorCode.INSUFFICIENT_ENCRYPTION


async def test_guard_pairing_installs_a_session_class_that_keeps_bumbles_behaviour() -> None:
    devices = TwoDevices()
    guard_pairing(devices[1], lambda connection, command: None, lambda connection, code: None)
    session_class = devices[1].smp_session_proxy
    assert issubclass(session_class, smp.Session)
    assert session_class.on_smp_pairing_request_command is not (
        smp.Session.on_smp_pairing_request_command
    )


def test_irk_resolver_answers_as_bumbles_resolver() -> None:
    """Same identity for every bonded phone's private address, None for a stranger's, on a
    resolving list of 200 bonds (the charger's resolver, radio.bumble_fixes.IrkResolver)."""
    keys = [
        (
            secrets.token_bytes(16),
            hci.Address(random_static_address(), hci.Address.RANDOM_DEVICE_ADDRESS),
        )
        for _ in range(200)
    ]
    ours, bumbles = IrkResolver(keys), smp.AddressResolver(keys)

    def private_address(irk: bytes) -> hci.Address:
        prand = bytearray(secrets.token_bytes(3))
        prand[2] = (prand[2] & 0x3F) | 0x40  # resolvable private address (Vol 6 Part B 1.3.2.2)
        return hci.Address(
            crypto.ah(irk, bytes(prand)) + bytes(prand), hci.Address.RANDOM_DEVICE_ADDRESS
        )

    for irk, identity in (keys[0], keys[117], keys[-1]):
        rpa = private_address(irk)
        resolved = ours.resolve(rpa)
        assert resolved is not None and str(resolved) == str(identity)
        assert resolved == bumbles.resolve(rpa)
        assert resolved.address_type == hci.Address.RANDOM_IDENTITY_ADDRESS
    stranger = private_address(secrets.token_bytes(16))
    assert ours.resolve(stranger) is None and bumbles.resolve(stranger) is None
