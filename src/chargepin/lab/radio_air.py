"""A virtual radio with a real charger daemon on an event loop of its own (a thread): the air a
radio app's phone (`chargepin app`) meets a charger on, in one process, for the tests and the
app's screens (lab/app_screens.py).

The daemon and the app's phone meet through `chargepin radio`'s controllers (tcp-client on
loopback), as two processes would; the app opens its phone in its own server's event loop.
Every start is awaited, every stop joined with a bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

from bumble.transport.common import Transport

from chargepin.charger.daemon import ChargerDaemon
from chargepin.clock import Clock, SystemClock
from chargepin.lab.ports import free_ports
from chargepin.lab.testbed import ChargerSpec, provision
from chargepin.radio.transport import open_hci
from chargepin.radio.virtual import serve_radio

T = TypeVar("T")
STEP_TIMEOUT = 20.0
"""Seconds a start, a stop or a call on the radio's loop may take."""


class Air:
    """A virtual radio (one controller per port) and a charger daemon on controller 0, on an
    event loop in a thread of their own."""

    def __init__(self, directory: Path, spec: ChargerSpec, clock: Clock | None = None) -> None:
        self.ports = free_ports(2)
        self.clock: Clock = clock or SystemClock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()
        self.transports: list[Transport] = []
        self.daemon: ChargerDaemon | None = None
        self.run(self._start(directory / "charger.db", spec))

    def transport(self, index: int) -> str:
        return f"tcp-client:127.0.0.1:{self.ports[index]}"

    def run(self, coroutine: Awaitable[T]) -> T:
        """Run `coroutine` on the radio's loop and wait for it (bounded)."""

        async def wrapped() -> T:
            return await coroutine

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(STEP_TIMEOUT)

    def on_daemon(self, read: Callable[[ChargerDaemon], T]) -> T:
        """`read(daemon)` on the radio's loop (the daemon's state store belongs to it)."""

        async def call() -> T:
            assert self.daemon is not None
            return read(self.daemon)

        return self.run(call())

    async def _start(self, state: Path, spec: ChargerSpec) -> None:
        self.transports = await serve_radio(self.ports)
        endpoints = await self.stack.enter_async_context(open_hci(self.transport(0)))
        store = provision(state, spec)
        self.stack.callback(store.close)
        self.daemon = ChargerDaemon(store, endpoints, clock=self.clock)
        await self.daemon.start()
        self.stack.push_async_callback(self.daemon.stop)

    async def _stop(self) -> None:
        await self.stack.aclose()
        for transport in self.transports:
            await transport.close()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STEP_TIMEOUT)
            self.loop.close()
