"""A plain Bumble central with no chargepin code: what a phone's own pairing dialog does.

Used to show that the daemon pairs with any standards-conformant LE Secure Connections central,
and to drive the SMP corner cases (Just Works, legacy pairing, cancel, hang up mid-entry) that
our own phone client never produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from bumble import hci
from bumble.core import ProtocolError
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.keys import MemoryKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core.addresses import random_static_address
from chargepin.phone.client import wait_disconnected
from chargepin.radio.virtual import VirtualRadio

KEYBOARD_DISPLAY = PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT  # phones


class TypingDelegate(PairingDelegate):
    """Types `passkey` when asked; with `hold`, waits for the event before typing."""

    def __init__(
        self,
        passkey: int | None,
        io: PairingDelegate.IoCapability = KEYBOARD_DISPLAY,
        hold: asyncio.Event | None = None,
    ) -> None:
        super().__init__(io_capability=io)
        self.passkey = passkey
        self.hold = hold
        self.asked = asyncio.Event()

    async def get_number(self) -> int | None:
        self.asked.set()
        if self.hold is not None:
            await self.hold.wait()
        return self.passkey

    async def confirm(self, auto: bool = False) -> bool:
        return True

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return True


class BareCentral:
    """One Bumble Device acting as a central, with per-test pairing settings."""

    def __init__(self, radio: VirtualRadio, name: str = "bare") -> None:
        endpoints = radio.attach(name)
        config = DeviceConfiguration(
            name=name,
            address=hci.Address(random_static_address()),
            irk=secrets.token_bytes(16),
        )
        self.device = Device.from_config_with_hci(config, endpoints.source, endpoints.sink)
        self.device.keystore = MemoryKeyStore()
        self.delegate = TypingDelegate(None)
        self.sc = True
        self.mitm = True
        self.device.pairing_config_factory = lambda _c: PairingConfig(
            sc=self.sc,
            mitm=self.mitm,
            bonding=True,
            delegate=self.delegate,
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    async def start(self) -> None:
        await self.device.power_on()

    async def connect(self, daemon: ChargerDaemon) -> Connection:
        return await self.device.connect(
            hci.Address(daemon.address), own_address_type=hci.OwnAddressType.RANDOM
        )

    async def pair(self, connection: Connection, timeout: float = 10.0) -> int | None:
        """Pair; None on success, else the SMP error code the charger answered."""
        try:
            await asyncio.wait_for(connection.pair(), timeout)
        except ProtocolError as error:
            return int(error.error_code)
        return None

    async def wait_disconnected(self, connection: Connection, timeout: float = 3.0) -> bool:
        """True once the charger dropped the link (bounded wait, no sleeping)."""
        return await wait_disconnected(connection, timeout)

    async def stop(self) -> None:
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2.0)
        await self.device.power_off()
