"""The baseline of `chargepin bench pairing`: two plain Bumble devices, one static passkey.

No chargepin code runs on either side: a peripheral whose DisplayOnly delegate always shows the
same passkey and a KeyboardOnly central that types it, both with in-memory key stores, on their
own virtual radio. It is what pairing costs on this stack and this machine, so the bench can
report the daemon's overhead as a ratio measured side by side instead of as absolute times that
a shared, noisy machine makes meaningless (notes/bumble.md, "Pairing with a fixed passkey").
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from bumble import hci
from bumble.device import Advertisement, Connection, Device, DeviceConfiguration
from bumble.keys import MemoryKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.core.addresses import random_static_address
from chargepin.radio.virtual import VirtualRadio

ADVERTISING_INTERVAL_MS = 20.0
"""The daemon's interval too: connect() waits for the peer's next advertising PDU."""

STEP_TIMEOUT = 10.0
"""Seconds any one step may take before the round is declared hung (Bumble has no SMP timer)."""


class _StaticPasskeyDisplay(PairingDelegate):
    """DisplayOnly peripheral that shows the same passkey every time (the seed's behaviour)."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        return self._passkey


class _StaticPasskeyKeyboard(PairingDelegate):
    """KeyboardOnly central that types the passkey it was given."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self._passkey = passkey

    async def get_number(self) -> int | None:
        return self._passkey


def _pairing_config(delegate: PairingDelegate) -> PairingConfig:
    """The same SMP requirements the daemon and the phone use: LE SC, MITM, bonding."""
    return PairingConfig(
        sc=True,
        mitm=True,
        bonding=True,
        delegate=delegate,
        identity_address_type=PairingConfig.AddressType.RANDOM,
    )


def _device(radio: VirtualRadio, name: str) -> Device:
    """A Bumble device with a random static identity, a random IRK and an in-memory key store."""
    endpoints = radio.attach(name)
    config = DeviceConfiguration(
        name=name,
        address=hci.Address(random_static_address()),
        irk=secrets.token_bytes(16),
        identity_address_type=hci.Address.RANDOM_DEVICE_ADDRESS,
    )
    device = Device.from_config_with_hci(config, endpoints.source, endpoints.sink)
    device.keystore = MemoryKeyStore()
    return device


class BarePair:
    """A bare Bumble peripheral and central on their own virtual radio, ready to pair again and
    again with one static passkey.

    Build and `start()` it inside the running event loop (a LocalLink belongs to one loop).
    """

    def __init__(self, passkey: int) -> None:
        if not 0 < passkey <= 999_999:
            raise ValueError(f"passkey {passkey} is not 000001..999999 (000000 hangs Bumble)")
        self.radio = VirtualRadio()
        self.peripheral = _device(self.radio, "bare-peripheral")
        self.central = _device(self.radio, "bare-central")
        display = _StaticPasskeyDisplay(passkey)
        keyboard = _StaticPasskeyKeyboard(passkey)
        self.peripheral.pairing_config_factory = lambda _connection: _pairing_config(display)
        self.central.pairing_config_factory = lambda _connection: _pairing_config(keyboard)

    async def start(self) -> None:
        """Power both on; the peripheral advertises at 20 ms and again after each disconnection."""
        await self.peripheral.power_on()
        await self.central.power_on()
        await self.peripheral.start_advertising(
            own_address_type=hci.OwnAddressType.RANDOM,
            auto_restart=True,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )

    async def stop(self) -> None:
        """Disconnect anything left and power both off."""
        for device in (self.central, self.peripheral):
            for connection in list(device.connections.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.disconnect(), 2.0)
        with contextlib.suppress(Exception):
            await self.peripheral.stop_advertising()
        for device in (self.central, self.peripheral):
            with contextlib.suppress(Exception):
                await device.power_off()

    async def connect(self) -> Connection:
        """Hear the peripheral advertise, then connect to it (the untimed part of a round).

        Connecting only to a peer just heard avoids the virtual controller's pending-connection
        trap (notes/bumble.md, "Virtual radio"), and mirrors the phone's scan-then-connect.
        """
        target = self.peripheral.random_address
        heard = asyncio.Event()

        def on_advertisement(advertisement: Advertisement) -> None:
            if advertisement.address == target:
                heard.set()

        self.central.on(self.central.EVENT_ADVERTISEMENT, on_advertisement)
        try:
            await self.central.start_scanning(active=False, scan_interval=20, scan_window=20)
            await asyncio.wait_for(heard.wait(), STEP_TIMEOUT)
        finally:
            self.central.remove_listener(self.central.EVENT_ADVERTISEMENT, on_advertisement)
            await self.central.stop_scanning()
        return await self.central.connect(target, own_address_type=hci.OwnAddressType.RANDOM)

    async def pair(self, connection: Connection) -> None:
        """The timed part: one full LE Secure Connections passkey-entry pairing with bonding."""
        await asyncio.wait_for(connection.pair(), STEP_TIMEOUT)
        if not (connection.is_encrypted and connection.authenticated):
            raise RuntimeError("bare Bumble pairing returned without an authenticated link")

    async def disconnect_and_forget(self, connection: Connection) -> None:
        """Hang up, wait until both sides saw it, and delete the bond on both sides.

        The next round must be a full pairing again, exactly like a fresh phone's first one.
        """
        await disconnect_both(connection, self.peripheral)
        for device in (self.central, self.peripheral):
            keystore = device.keystore
            assert keystore is not None
            for name, _keys in await keystore.get_all():
                await keystore.delete(name)


async def disconnect_both(connection: Connection, peripheral: Device) -> None:
    """Disconnect `connection` from the central side and return once the peripheral saw it too.

    Both chargepin's and the bare rounds end this way, so neither arm starts its next round
    while the previous one is still being torn down.
    """
    gone = [asyncio.Event() for _ in peripheral.connections.values()]
    for event, peer_connection in zip(gone, list(peripheral.connections.values()), strict=True):
        peer_connection.once(
            peer_connection.EVENT_DISCONNECTION, lambda *_args, event=event: event.set()
        )
    if connection.handle in connection.device.connections:
        await asyncio.wait_for(connection.disconnect(), STEP_TIMEOUT)
    for event in gone:
        await asyncio.wait_for(event.wait(), STEP_TIMEOUT)
