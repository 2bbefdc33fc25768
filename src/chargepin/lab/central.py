"""A plain Bumble central with no chargepin code: what a phone's own pairing dialog does, and
what an attacker's radio does.

Used to show that the daemon pairs with any standards-conformant LE Secure Connections central,
to drive the SMP corner cases (Just Works, legacy pairing, cancel, hang up mid-entry) that our
own phone client never produces, and by the security lab's attacks (`chargepin.lab.attacks`),
which need what a phone app never looks at: the passkey round at which a pairing failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from bumble import hci
from bumble.core import UUID, ProtocolError
from bumble.device import Connection, Device, DeviceConfiguration, Peer
from bumble.keys import MemoryKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core import protocol
from chargepin.core.addresses import random_static_address
from chargepin.phone.client import wait_disconnected
from chargepin.radio.virtual import VirtualRadio

INFO_MTU = 247
"""The ATT MTU the central asks for: the info characteristic is longer than the default 23 - 4."""

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


@dataclass(frozen=True)
class PairingOutcome:
    """How one pairing attempt ended, as the central saw it."""

    error: int | None
    """The SMP error code (its meaning: `core.smp.MEANINGS`), None on success."""
    failed_round: int | None
    """The passkey-entry round (0-19) at which the charger failed the pairing, when it did.

    LE Secure Connections passkey entry commits to one passkey bit per round and the responder
    checks the initiator's commitment before revealing its own: it fails at the first round
    whose bit is wrong, so rounds 0..failed_round-1 carried correct bits (Core spec Vol 3
    Part H 2.3.5.6.3; the static-passkey weakness, CVE-2020-26558's relative).
    """


class BareCentral:
    """One Bumble Device acting as a central, with per-test pairing settings."""

    def __init__(self, radio: VirtualRadio, name: str = "bare", address: str | None = None) -> None:
        """`address`: the random address to use (an attacker may copy anyone's); else new."""
        endpoints = radio.attach(name)
        config = DeviceConfiguration(
            name=name,
            address=hci.Address(address or random_static_address()),
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
        """Pair; None on success, else the SMP error code the charger answered (0: none given)."""
        try:
            await asyncio.wait_for(connection.pair(), timeout)
        except ProtocolError as error:
            return int(error.error_code or 0)
        return None

    async def attempt(
        self, connection: Connection, passkey: int, timeout: float = 10.0
    ) -> PairingOutcome:
        """Pair typing `passkey`; how it ended and, on a wrong passkey, the failing round."""
        self.delegate = TypingDelegate(passkey)
        rounds: list[int] = []

        def on_failure(_reason: int) -> None:
            session = self.device.smp_manager.sessions.get(connection.handle)
            if session is not None:
                rounds.append(session.passkey_step)

        connection.on("pairing_failure", on_failure)
        try:
            error = await self.pair(connection, timeout)
        finally:
            connection.remove_listener("pairing_failure", on_failure)
        failed_round = rounds[0] if rounds and error is not None else None
        return PairingOutcome(error, failed_round)

    async def read_info(self, connection: Connection) -> protocol.OpenInfo:
        """The charger's open info characteristic, read by UUID (no service discovery).

        A Read By Type answer is cut at the ATT MTU less 4 bytes: exchange a larger MTU first.
        """
        peer = Peer(connection)
        await peer.request_mtu(INFO_MTU)
        values = await peer.gatt_client.read_characteristics_by_uuid(UUID(protocol.INFO_UUID), None)
        if not values:
            raise protocol.ProtocolError("the charger has no info characteristic")
        return protocol.OpenInfo.decode(bytes(values[0]))

    async def hang_up(self, connection: Connection) -> None:
        """Disconnect and wait until the link is gone (the virtual radio keeps ghosts else)."""
        if connection.handle not in self.device.connections:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.disconnect(), 2.0)

    async def wait_disconnected(self, connection: Connection, timeout: float = 3.0) -> bool:
        """True once the charger dropped the link (bounded wait, no sleeping)."""
        return await wait_disconnected(connection, timeout)

    async def stop(self) -> None:
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2.0)
        await self.device.power_off()
