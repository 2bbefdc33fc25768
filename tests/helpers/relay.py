"""A TCP relay on 127.0.0.1 that can lose the server's answers: a lost answer made on purpose.

The charger's OCPP link deletes an event only once the CSMS answered it; the CSMS stores it
once per eventId. The case in between - the CSMS stored the event, its answer never reached the
charger, the charger died - cannot be timed from outside two processes, so the test puts this
relay between them and drops what the server sends while `losing` is set. Both ends are the
real programs over real sockets; the relay only forwards bytes (or drops them). It runs its own
event loop in a thread, so a test that blocks (waiting for a process) never stalls the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from chargepin.lab.ports import LOOPBACK

CHUNK = 64 * 1024
START_TIMEOUT = 10.0


class Relay:
    """Forwards every connection to 127.0.0.1:`upstream`; refused upstream -> client closed."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.losing = False
        """While set, bytes from the server are dropped (counted in `lost`), not forwarded."""
        self.lost = 0
        self.client_silenced = False
        """While set, bytes from the client are dropped (counted in `lost`) until `hang_up`:
        set at the right moment (the charger committed a change), its answer is lost."""
        self.connections = 0
        """Client connections the server accepted (for the test's own checks)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._pumps: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self) -> int:
        """Listen on a free loopback port (returned) and forward from there."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or not self.port:
            raise RuntimeError(f"the relay did not start within {START_TIMEOUT} s")
        return self.port

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(START_TIMEOUT)

    def hang_up(self) -> None:
        """Close every connection now (both ends see it closed) and forward the client again."""
        loop = self._loop
        done = threading.Event()

        def cut() -> None:
            for task in list(self._pumps):
                task.cancel()
            self.client_silenced = False
            done.set()

        if loop is None or loop.is_closed():
            raise RuntimeError("the relay is not running")
        loop.call_soon_threadsafe(cut)
        if not done.wait(START_TIMEOUT):
            raise RuntimeError(f"the relay did not hang up within {START_TIMEOUT} s")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pumps = self._pumps

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            pumps.add(task)
            try:
                await self._connection(reader, writer)
            finally:
                pumps.discard(task)

        server = await asyncio.start_server(serve, LOOPBACK, 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(pumps):
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _connection(
        self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter
    ) -> None:
        try:
            server, to_server = await asyncio.open_connection(LOOPBACK, self.upstream)
        except OSError:
            to_client.close()  # the server is down: the client sees its connection refused
            return
        self.connections += 1
        try:
            await asyncio.gather(
                self._pump(client, to_server, from_server=False),
                self._pump(server, to_client, from_server=True),
            )
        finally:
            for writer in (to_client, to_server):
                writer.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, from_server: bool
    ) -> None:
        """Copy `source` to `sink` until either end closes; then close `sink`, so the other
        pump ends too (a killed client closes its server connection, and the reverse)."""
        try:
            while chunk := await source.read(CHUNK):
                if (from_server and self.losing) or (not from_server and self.client_silenced):
                    self.lost += len(chunk)
                    continue
                sink.write(chunk)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()
