"""The charger's connected phones: what it knows of each link, and its link slots.

The rules (who may use a link, which link goes when the charger is full) are core.links'; this
module keeps the per-link state, runs the timers those rules need and drops links.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bumble import hci
from bumble.device import Connection, Device

from chargepin.core import links, protocol
from chargepin.core.attempts import SMP_TIMEOUT
from chargepin.core.pairing_attempt import Attempt


@dataclass
class LinkTimings:
    """How many links the charger holds and how long it waits on them (tests shorten them)."""

    max_links: int = 4
    smp_timeout: float = SMP_TIMEOUT
    unsecured_link_timeout: float = links.UNSECURED_LINK_TIMEOUT
    eviction_grace: float = links.EVICTION_GRACE


@dataclass
class LinkState:
    """What the daemon knows about one connected phone (never persisted)."""

    connected_at: float = 0.0  # event-loop time, to evict the oldest idle stranger first
    attempt: Attempt = field(default_factory=Attempt)
    challenge: bytes | None = None
    challenge_at: float = 0.0
    admin_result: protocol.AdminResult | None = None
    presence: bytes | None = None  # this link's proof for the nonce it wrote (core.presence)
    smp_timer: asyncio.TimerHandle | None = None
    idle_timer: asyncio.TimerHandle | None = None
    result_read: asyncio.Event = field(default_factory=asyncio.Event)

    def stop_smp_timer(self) -> None:
        if self.smp_timer is not None:
            self.smp_timer.cancel()
            self.smp_timer = None


Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class LinkSlots:
    """One LinkState per connected phone; idle strangers are dropped and evicted for room."""

    def __init__(
        self,
        device: Device,
        timings: LinkTimings,
        spawn: Spawn,
        on_idle: Callable[[Connection], None],
    ) -> None:
        self._device = device
        self.timings = timings
        self._spawn = spawn
        self._on_idle = on_idle
        self._room_timer: asyncio.TimerHandle | None = None
        self.by_handle: dict[int, LinkState] = {}

    def of(self, connection: Connection) -> LinkState:
        """The link's state (made on first use: an event may beat the connection callback)."""
        return self.by_handle.setdefault(connection.handle, LinkState())

    def opened(self, connection: Connection) -> LinkState:
        loop = asyncio.get_running_loop()
        link = self.by_handle[connection.handle] = LinkState(connected_at=loop.time())
        link.idle_timer = loop.call_later(
            self.timings.unsecured_link_timeout, self._drop_if_idle, connection, link
        )
        self.make_room()
        return link

    def closed(self, connection: Connection, link: LinkState) -> None:
        link.stop_smp_timer()
        if link.idle_timer is not None:
            link.idle_timer.cancel()
        self.by_handle.pop(connection.handle, None)

    def stop(self) -> None:
        if self._room_timer is not None:
            self._room_timer.cancel()
        for link in self.by_handle.values():
            if link.idle_timer is not None:
                link.idle_timer.cancel()

    def _idle(self, connection: Connection, link: LinkState) -> bool:
        return links.idle_stranger(encrypted=connection.is_encrypted, pairing=link.attempt.pairing)

    def _drop_if_idle(self, connection: Connection, link: LinkState) -> None:
        if connection.handle in self._device.connections and self._idle(connection, link):
            self._on_idle(connection)
            self.drop(connection, hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

    def make_room(self) -> None:
        """With every slot taken, free one as core.links.room says, now or when it may."""
        if self._room_timer is not None:
            self._room_timer.cancel()
            self._room_timer = None
        connections = self._device.connections
        loop = asyncio.get_running_loop()
        decision = links.room(
            (
                links.Slot(handle, link.connected_at, self._idle(connections[handle], link))
                for handle, link in self.by_handle.items()
                if handle in connections
            ),
            self.timings.max_links,
            loop.time(),
            self.timings.eviction_grace,
        )
        if isinstance(decision, links.EvictLater):
            self._room_timer = loop.call_at(decision.at, self.make_room)
        elif isinstance(decision, links.Evict):
            self.drop(
                connections[decision.handle],
                hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR,
            )

    def drop(self, connection: Connection, reason: int) -> None:
        """Disconnect after the pending PDUs went out (notes/bumble.md: drain, then disconnect)."""

        async def drop() -> None:
            with contextlib.suppress(Exception):
                await connection.drain()
            if connection.handle not in self._device.connections:
                return  # the phone hung up first
            with contextlib.suppress(Exception):  # raced with the phone's own disconnect
                await asyncio.wait_for(connection.disconnect(reason), 2.0)

        self._spawn(drop())
