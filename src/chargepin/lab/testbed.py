"""A charger and phones on one virtual radio, in one process: for the demo, the lab and tests.

Everything here is the real thing (the daemon, the phone client, the SQLite state, Bumble's
controllers on a LocalLink). `OwnerAuthority` issues tickets from the factory secret with the
same core code the fleet service uses, for the Bluetooth-only tests that do not need accounts;
the demo and the end-to-end tests use the real fleet service instead.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.service import LockoutOverrides, provision_charger
from chargepin.charger.store import StateStore
from chargepin.clock import Clock, SystemClock
from chargepin.core.epochs import epoch_pin
from chargepin.core.keys import new_secret
from chargepin.core.pin import Pin
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName
from chargepin.core.provisioning import ProvisioningBundle
from chargepin.core.tickets import Action, issue_ticket, seal_ticket
from chargepin.phone.client import ChargerLink, Phone
from chargepin.phone.identity import load_identity
from chargepin.radio.keystore import open_keystore_file
from chargepin.radio.virtual import HciEndpoints, VirtualRadio


@dataclass(frozen=True)
class ChargerSpec:
    """What the factory provisions."""

    serial: str = "CP-0001"
    model: str = "Pulsar Max"
    firmware: FirmwareVersion | str = "6.11.2"
    """As the factory is told it: text is parsed when the charger is provisioned."""
    produced: datetime.date = datetime.date(2025, 9, 1)
    profile: ProfileName = DEFAULT_PROFILE
    overrides: LockoutOverrides | None = None
    pin_enabled: bool | None = None  # None: as the factory leaves it (the PIN policy decides)
    secret: bytes = field(default_factory=new_secret)

    @classmethod
    def from_bundle(
        cls, bundle: ProvisioningBundle, profile: ProfileName = DEFAULT_PROFILE
    ) -> ChargerSpec:
        """What `chargepin charger init --bundle` provisions: the factory's identity and secret."""
        return cls(
            serial=bundle.serial,
            model=bundle.model,
            firmware=bundle.firmware,
            produced=bundle.produced,
            secret=bundle.secret,
            profile=profile,
        )


def provision(path: Path, spec: ChargerSpec) -> StateStore:
    """A new charger state file, exactly as `chargepin charger init` makes it.

    An explicit `pin_enabled` then stands for what the owner did since (enabled the PIN on an
    optional-class charger), written the way the daemon writes it.
    """
    provision_charger(
        path,
        serial=spec.serial,
        model=spec.model,
        firmware=FirmwareVersion.parse(spec.firmware)
        if isinstance(spec.firmware, str)
        else spec.firmware,
        produced=spec.produced,
        secret=spec.secret,
        profile=spec.profile,
        overrides=spec.overrides,
    )
    store = StateStore.open(path)
    if spec.pin_enabled is not None and spec.pin_enabled != store.pin_enabled:
        store.save_pin_state(replace(store.pin_state, enabled=spec.pin_enabled, custom_pin=None))
    return store


class OwnerAuthority:
    """Issues sealed tickets for one charger from its factory secret (the fleet's job)."""

    def __init__(self, secret: bytes, serial: str, clock: Clock) -> None:
        self._secret = secret
        self._serial = serial
        self._clock = clock

    def pin_of_epoch(self, epoch: int) -> Pin:
        """What the troubleshooting screen shows: the PIN of the charger's current epoch."""
        return epoch_pin(self._secret, self._serial, epoch)

    def ticket(self, challenge: bytes, action: Action, args: dict[str, str] | None = None) -> bytes:
        ticket = issue_ticket(self._serial, challenge, action, args, self._clock.now())
        return seal_ticket(self._secret, ticket)

    async def authorise(
        self, link: ChargerLink, action: Action, args: dict[str, str] | None = None
    ) -> bytes:
        """Read the charger's challenge over `link` and return a ticket bound to it."""
        return self.ticket(await link.read_challenge(), action, args)


class Testbed:
    """One virtual radio with chargers and phones whose state lives under `directory`."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, clock: Clock | None = None) -> None:
        self.directory = directory
        self.clock: Clock = clock or SystemClock()
        self.radio = VirtualRadio()
        self.daemons: list[ChargerDaemon] = []
        self.phones: list[Phone] = []
        self._controllers: dict[int, HciEndpoints] = {}

    async def install(
        self, bundle: ProvisioningBundle, profile: ProfileName = DEFAULT_PROFILE
    ) -> ChargerDaemon:
        """A charger from the factory's bundle (`charger init --bundle`), named by its serial."""
        return await self.charger(ChargerSpec.from_bundle(bundle, profile), name=bundle.serial)

    async def charger(
        self, spec: ChargerSpec | None = None, name: str = "charger"
    ) -> ChargerDaemon:
        """Provision (first time) or reopen a charger's state and start its daemon."""
        path = self.directory / f"{name}.db"
        store = StateStore.open(path) if path.exists() else provision(path, spec or ChargerSpec())
        endpoints = self.radio.attach(name)
        daemon = ChargerDaemon(store, endpoints, clock=self.clock)
        await daemon.start()
        self.daemons.append(daemon)
        self._controllers[id(daemon)] = endpoints
        return daemon

    async def restart(self, daemon: ChargerDaemon, name: str = "charger") -> ChargerDaemon:
        """Stop a daemon and start a new one on the same state file (a reboot)."""
        await self.stop_charger(daemon)
        return await self.charger(name=name)

    async def stop_charger(self, daemon: ChargerDaemon) -> None:
        await daemon.stop()
        daemon.store.close()
        self.daemons.remove(daemon)
        self.radio.detach(self._controllers.pop(id(daemon)))

    async def phone(
        self, name: str = "phone", pairing_timeout: float = 10.0, privacy: bool = False
    ) -> Phone:
        bonds = open_keystore_file(self.directory / f"{name}-bonds.db")
        phone = Phone(
            self.radio.attach(name),
            bonds,
            identity=load_identity(bonds, name),
            pairing_timeout=pairing_timeout,
            privacy=privacy,
        )
        await phone.start()
        self.phones.append(phone)
        return phone

    def authority(self, daemon: ChargerDaemon) -> OwnerAuthority:
        store = daemon.store
        return OwnerAuthority(store.secret, store.identity.serial, self.clock)

    async def close(self) -> None:
        for phone in self.phones:
            await phone.stop()
            phone.bonds.close()
        for daemon in list(self.daemons):
            await self.stop_charger(daemon)
        self.phones.clear()
