"""The radio app's phone: one Bumble central on the transport for the process's life, in the
server's event loop, and the links to chargers it keeps open between requests.

One operation on the air at a time (a scan and a connection never overlap: one lock); the
links are the phone's, not a browser's: every screen asks the fleet first whether the signed-in
user may use the charger.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass

from chargepin.phone.client import ChargerLink, FoundCharger, Phone
from chargepin.phone.flows import PhoneOptions, open_phone


@dataclass(frozen=True)
class RadioOptions:
    """The phone's transport and bonds, and how long Nearby listens."""

    phone: PhoneOptions
    scan_seconds: float = 1.5


class Radio:
    """The phone, opened by `start` and closed by `stop` (the app's lifespan)."""

    def __init__(self, options: RadioOptions) -> None:
        self.options = options
        self.lock = asyncio.Lock()
        self._links: dict[str, ChargerLink] = {}
        self._stack: AsyncExitStack | None = None
        self._phone: Phone | None = None

    async def start(self) -> None:
        stack = AsyncExitStack()
        self._phone = await stack.enter_async_context(open_phone(self.options.phone))
        self._stack = stack

    async def stop(self) -> None:
        for link in list(self._links.values()):
            await link.disconnect()
        self._links.clear()
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._phone = None

    @property
    def started(self) -> bool:
        return self._phone is not None

    @property
    def phone(self) -> Phone:
        if self._phone is None:
            raise RuntimeError("the radio app's phone is not started")
        return self._phone

    async def scan(self) -> list[FoundCharger]:
        """The chargers heard within the scan time, by serial."""
        found = await self.phone.scan(self.options.scan_seconds)
        return sorted(found, key=lambda charger: (charger.serial, charger.address))

    async def bonded(self, charger: FoundCharger) -> bool:
        """Whether this phone holds a bond with `charger` (it reconnects without a PIN)."""
        return await self.phone.bonds.get(charger.address) is not None

    def link(self, serial: str) -> ChargerLink | None:
        """The open link to `serial`, if the charger has not ended it."""
        link = self._links.get(serial)
        if link is None:
            return None
        if link.connection.handle not in self.phone.device.connections:
            del self._links[serial]
            return None
        return link

    async def keep(self, serial: str, link: ChargerLink) -> None:
        """Hold `link` open between requests (a link to the same charger before is ended)."""
        old = self._links.pop(serial, None)
        if old is not None and old is not link:
            await old.disconnect()
        self._links[serial] = link

    async def drop(self, serial: str) -> None:
        link = self._links.pop(serial, None)
        if link is not None:
            await link.disconnect()

    def open_serials(self) -> list[str]:
        return [serial for serial in list(self._links) if self.link(serial) is not None]
