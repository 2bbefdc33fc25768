"""The virtual radio behaves like air where Bumble's controller does not."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from bumble import hci
from bumble.device import Connection, Device, DeviceConfiguration

from chargepin.core.addresses import random_static_address
from chargepin.lab.ports import free_ports
from chargepin.radio.transport import open_hci
from chargepin.radio.virtual import (
    FAILED_TO_ESTABLISH,
    REMOTE_POWER_OFF,
    HciEndpoints,
    VirtualController,
    VirtualRadio,
    serve_radio,
)
from tests.helpers.timing import WITHIN


def device(radio: VirtualRadio, name: str) -> tuple[Device, VirtualController]:
    endpoints = radio.attach(name)
    config = DeviceConfiguration(
        name=name, address=hci.Address(random_static_address()), irk=secrets.token_bytes(16)
    )
    return Device.from_config_with_hci(config, endpoints.source, endpoints.sink), endpoints.source


async def test_connect_request_to_a_stopped_advertiser_fails_to_establish() -> None:
    radio = VirtualRadio()
    peripheral, _ = device(radio, "peripheral")
    central, central_controller = device(radio, "central")
    await peripheral.power_on()
    await central.power_on()
    # The central asks to connect; the peripheral is not advertising (it just stopped), and
    # its controller hears the last advertisement it sent: what create_le_connection models.
    await peripheral.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
    await peripheral.stop_advertising()
    reason: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connection(connection: Connection) -> None:
        connection.once(connection.EVENT_DISCONNECTION, reason.set_result)

    central.once(central.EVENT_CONNECTION, on_connection)
    connecting = asyncio.ensure_future(
        central.connect(peripheral.random_address, own_address_type=hci.OwnAddressType.RANDOM)
    )
    while central_controller.pending_le_connection is None:
        await asyncio.sleep(0)
    central_controller.create_le_connection(peripheral.random_address)
    assert await asyncio.wait_for(reason, WITHIN) == FAILED_TO_ESTABLISH
    assert peripheral.connections == {}
    connecting.cancel()


async def test_hci_reset_drops_the_links_like_a_power_cycle() -> None:
    radio = VirtualRadio()
    peripheral, peripheral_controller = device(radio, "peripheral")
    central, _ = device(radio, "central")
    await peripheral.power_on()
    await central.power_on()
    await peripheral.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
    connection = await central.connect(
        peripheral.random_address, own_address_type=hci.OwnAddressType.RANDOM
    )
    gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    connection.once(connection.EVENT_DISCONNECTION, gone.set_result)
    peripheral_controller.on_hci_reset_command(hci.HCI_Reset_Command())
    assert await asyncio.wait_for(gone, WITHIN) == REMOTE_POWER_OFF


async def test_a_host_that_reconnects_before_its_old_connection_ends_is_answered() -> None:
    """A daemon restarting in its own process (an OCPP Reset) reopens its radio port within
    milliseconds: the radio may see the new connection before the old one's end. The old end
    must not cut the new host off (Bumble's tcp-server transport did: power_on hung)."""
    [port] = free_ports(1)
    [transport] = await serve_radio([port])
    name = f"tcp-client:127.0.0.1:{port}"
    try:
        async with contextlib.AsyncExitStack() as first:
            old = await first.enter_async_context(open_hci(name))
            await asyncio.wait_for(host(old).power_on(), WITHIN)
            async with open_hci(name) as new:
                await first.aclose()  # the old connection ends after the new one began
                await asyncio.wait_for(host(new).power_on(), WITHIN)
    finally:
        await transport.close()


def host(endpoints: HciEndpoints) -> Device:
    config = DeviceConfiguration(
        name="host", address=hci.Address(random_static_address()), irk=secrets.token_bytes(16)
    )
    return Device.from_config_with_hci(config, endpoints.source, endpoints.sink)
