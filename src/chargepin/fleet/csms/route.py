"""`/ocpp/{serial}`: the WebSocket route chargers connect to, and this process's sockets.

The handshake is refused before the upgrade (an HTTP answer, never an accepted socket) for a
serial that is not one, a client that does not offer `ocpp2.0.1`, or credentials that do not
prove the charger (fleet/csms/auth.py). A charger holds one connection: a newer one takes the
registry row over and the older socket is closed (here at once; in another process at its next
write or delivery). `Hub` knows only this process's sockets, to wake their delivery when a
command for them is queued (here, or anywhere: PostgreSQL NOTIFY); everything another process
would need is in the database, this gateway's own liveness included (fleet/csms/gateways.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool

from chargepin.core.limits import serial_problem
from chargepin.fleet.csms import auth, events, gateways, registry
from chargepin.fleet.csms.station import SocketTransport, StationSession
from chargepin.fleet.db import (
    make_engine,
    postgres_options,
    refusal,
    session_factory,
    transaction,
)
from chargepin.fleet.times import utc_now

if TYPE_CHECKING:
    from chargepin.fleet.app import FleetState

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
REALM = 'Basic realm="chargepin OCPP", charset="UTF-8"'

router = APIRouter()


LISTEN_RETRY_MAX = 5.0
"""Seconds between attempts to LISTEN again after the connection was lost (doubling from 0.25)."""


class Hub:
    """This process's OCPP sockets by charger id (never the source of truth: the registry is),
    and the process as a gateway: its heartbeat, its LISTEN for queued commands (PostgreSQL),
    its sweep for the ones a lost notification would have missed (fleet/csms/gateways.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.own_engine: Engine | None = None
        """The gateway's own connection (beat, sweep), opened by `start`: a pool and a thread
        pool busy with a reconnection storm never starve the heartbeat that says this gateway
        is alive."""
        self.sessions_db = session_factory(engine)
        self.events = events.EventWriter(engine)
        """The process's one writer of the stations' security events (group commit)."""
        self.process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:128]
        """This gateway's id (csms_gateways.id, named by its chargers' connection rows)."""
        self.sessions: dict[int, StationSession] = {}
        self.taken = itertools.count(1)
        """Turns of this process's takes of a charger in the registry (`adopt`)."""
        self.wakes: dict[int, asyncio.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        """Set while this gateway LISTENs (PostgreSQL)."""

    # ------------------------------------------------------------------ the gateway's life

    def start(self) -> None:
        """Beat, sweep and (PostgreSQL) listen from now on, on the running loop (idempotent: the
        served process starts them with the app, an app served without its lifespan at its
        first charger)."""
        if self.tasks:
            return
        self.loop = asyncio.get_running_loop()
        self.own_engine = make_engine(
            self.engine.url.render_as_string(hide_password=False),
            gateways.BEAT,
            pool_size=1,
            max_overflow=0,
        )
        self.sessions_db = session_factory(self.own_engine)
        self.tasks.append(asyncio.create_task(self._beat(), name="ocpp-gateway-beat"))
        if self.engine.dialect.name == "postgresql":
            self.tasks.append(asyncio.create_task(self._listen(), name="ocpp-gateway-listen"))

    async def stop(self) -> None:
        """Stop beating and listening, and retire the gateway: its chargers are offline now."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        with contextlib.suppress(Exception):  # a database already gone: its beat ends anyway
            await asyncio.to_thread(self._db, gateways.retire)
        if self.own_engine is not None:
            self.own_engine.dispose()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """The app's lifespan in a served process: the gateway registered before it serves."""
        self.start()
        await asyncio.to_thread(self._db, gateways.beat, gateways.wall_now())
        try:
            yield
        finally:
            await self.stop()

    def _db(self, step: Any, *args: Any) -> Any:
        with transaction(self.sessions_db) as db:
            return step(db, self.process, *args)

    async def _beat(self) -> None:
        """The heartbeat every BEAT seconds; the sweep every SWEEP seconds."""
        loop = asyncio.get_running_loop()
        swept = loop.time()
        while True:
            try:
                await asyncio.to_thread(self._db, gateways.beat, gateways.wall_now())
                if loop.time() - swept >= gateways.SWEEP:
                    swept = loop.time()
                    await self.sweep()
            except Exception as error:  # the database away: beat again, never end the process
                logger.warning("gateway %s: heartbeat failed: %s", self.process, error)
            await asyncio.sleep(gateways.BEAT)

    async def sweep(self) -> None:
        """Wake the delivery of this gateway's chargers that have a command waiting."""
        for charger_id in await asyncio.to_thread(self._db, gateways.waiting):
            self.wake(charger_id)

    async def _listen(self) -> None:
        """LISTEN on gateways.CHANNEL and wake the session named by each notification; a lost
        connection is opened again (with back-off) and followed by a sweep."""
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        # The service's connection settings (db.postgres_options): connect timeout, TCP
        # keepalives (a server that vanished without closing the connection, a cut network, is
        # noticed within about a minute and the connection made again; the sweep covers the
        # time between).
        options = postgres_options()
        retry = 0.25
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, **options
                ) as connection:
                    await connection.execute(f"LISTEN {gateways.CHANNEL}")
                    self.listening.set()
                    retry = 0.25
                    await self.sweep()  # what was queued while nobody listened here
                    async for note in connection.notifies():
                        self._notified(note.payload)
            except (psycopg.Error, OSError) as error:
                logger.warning("gateway %s: LISTEN lost: %s", self.process, error)
            self.listening.clear()
            await asyncio.sleep(retry)
            retry = min(retry * 2, LISTEN_RETRY_MAX)

    def _notified(self, payload: str) -> None:
        """A notification's payload is a charger id; anything else (a stranger with access to
        the database) is logged and ignored."""
        if not payload.isascii() or not payload.isdigit() or len(payload) > 19:
            logger.warning("gateway %s: notification ignored: %.40r", self.process, payload)
            return
        self.wake(int(payload))

    # ------------------------------------------------------------------ this process's sockets

    def wake_event(self, charger_id: int) -> asyncio.Event:
        return self.wakes.setdefault(charger_id, asyncio.Event())

    def wake(self, charger_id: int) -> None:
        """Tell this process's socket of the charger, if it has one, that a command is queued.
        Safe from any thread (the API's handlers run in the thread pool)."""
        event = self.wakes.get(charger_id)
        if event is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(event.set)

    async def adopt(self, session: StationSession, taken: int) -> bool:
        """Make `session` this process's socket of its charger, closing the one it replaces.

        `taken` is its turn (`self.taken`) drawn under the charger's row lock as it took the
        charger in the registry, so turns follow the registry's order. Two connections of one
        charger at once may come back here in the other order; False then: a connection that
        took the charger after this one is already here, and this one is the superseded one
        (else the newer socket would be closed while the registry names it, and the charger
        shown offline while connected)."""
        older = self.sessions.get(session.charger_id)
        if older is not None and older.taken > taken:
            return False
        session.taken = taken
        self.sessions[session.charger_id] = session
        if older is not None and older is not session:
            await older.close("a newer connection of this charger took over")
        return True

    def drop(self, session: StationSession) -> None:
        if self.sessions.get(session.charger_id) is session:
            del self.sessions[session.charger_id]
            self.wakes.pop(session.charger_id, None)


async def refuse(
    websocket: WebSocket,
    status: int,
    error: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer the handshake with an HTTP refusal (the Denial Response extension), or a plain
    close before accepting (uvicorn answers 403) where the server lacks it."""
    if status == 401:
        headers = {"WWW-Authenticate": REALM}
    response = JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=1008)


@router.websocket("/ocpp/{serial}")
async def station(websocket: WebSocket, serial: str) -> None:
    """A charger's OCPP 2.0.1 connection (docs/OCPP.md)."""
    fleet: FleetState = websocket.app.state.fleet
    hub: Hub = websocket.app.state.csms
    if serial_problem(serial) is not None:
        await refuse(websocket, 404, "not_found", "no such charging station")
        return
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
        await refuse(
            websocket, 400, "subprotocol", f"offer the WebSocket subprotocol {SUBPROTOCOL}"
        )
        return

    def check() -> int | None:
        with transaction(fleet.sessions) as db:
            header = websocket.headers.get("authorization")
            return auth.authenticate(db, fleet.vault, serial, header, utc_now(fleet.clock))

    try:
        charger_id = await run_in_threadpool(check)
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as failure:
        busy = refusal(failure)
        if busy is None:
            raise
        # The database is slow or its pool exhausted: a bounded wait, then a clean refusal the
        # charger retries (its reconnect back-off), never a socket left hanging.
        logger.warning("%s: handshake refused, database busy: %s", serial, failure)
        await refuse(websocket, busy.status, busy.code, str(busy), busy.headers)
        return
    if charger_id is None:
        await refuse(
            websocket,
            401,
            "unauthorized",
            "Basic auth with the charger's serial and its CSMS password (chargepin charger "
            "csms-password) is required",
        )
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    if not hub.tasks:  # served without the app's lifespan: a gateway from its first charger on
        hub.start()
        await asyncio.to_thread(hub._db, gateways.beat, gateways.wall_now())
    connection_id = secrets.token_hex(16)

    def take() -> int:
        with transaction(fleet.sessions) as db:
            registry.take(db, charger_id, connection_id, hub.process, utc_now(fleet.clock))
            return next(hub.taken)  # drawn before the commit, under the charger's row lock

    try:
        taken = await run_in_threadpool(take)
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as failure:
        if refusal(failure) is None:
            raise
        logger.warning("%s: connection dropped, database busy: %s", serial, failure)
        await websocket.close(code=1013, reason="database busy; reconnect later")  # Try Again Later
        return
    session = StationSession(
        fleet,
        serial,
        charger_id,
        connection_id,
        SocketTransport(websocket),
        hub.wake_event(charger_id),
        hub.events,
    )
    if not await hub.adopt(session, taken):
        await session.close("a newer connection of this charger took over")
        return
    try:
        await session.serve()
    finally:
        hub.drop(session)
