"""`/ocpp/{serial}`: the WebSocket route chargers connect to, and this process's sockets.

The handshake is refused before the upgrade (an HTTP answer, never an accepted socket) for a
serial that is not one, a client that does not offer `ocpp2.0.1`, or credentials that do not
prove the charger (fleet/csms/auth.py). A charger holds one connection: a newer one takes the
registry row over and the older socket is closed (here at once; in another process at its next
write). `Hub` knows only this process's sockets, to wake their delivery when a command for them
is queued here; everything another process would need is in the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from chargepin.core.limits import serial_problem
from chargepin.fleet.csms import auth, events, registry
from chargepin.fleet.csms.station import SocketTransport, StationSession
from chargepin.fleet.db import transaction
from chargepin.fleet.times import utc_now

if TYPE_CHECKING:
    from chargepin.fleet.app import FleetState

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
REALM = 'Basic realm="chargepin OCPP", charset="UTF-8"'

router = APIRouter()


class Hub:
    """This process's OCPP sockets by charger id (never the source of truth: the registry is)."""

    def __init__(self, engine: Engine) -> None:
        self.events = events.EventWriter(engine)
        """The process's one writer of the stations' security events (group commit)."""
        self.process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:128]
        self.sessions: dict[int, StationSession] = {}
        self.wakes: dict[int, asyncio.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def wake_event(self, charger_id: int) -> asyncio.Event:
        return self.wakes.setdefault(charger_id, asyncio.Event())

    def wake(self, charger_id: int) -> None:
        """Tell this process's socket of the charger, if it has one, that a command is queued.
        Safe from any thread (the API's handlers run in the thread pool)."""
        event = self.wakes.get(charger_id)
        if event is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(event.set)

    async def adopt(self, session: StationSession) -> None:
        older = self.sessions.get(session.charger_id)
        self.sessions[session.charger_id] = session
        if older is not None and older is not session:
            await older.close("a newer connection of this charger took over")

    def drop(self, session: StationSession) -> None:
        if self.sessions.get(session.charger_id) is session:
            del self.sessions[session.charger_id]
            self.wakes.pop(session.charger_id, None)


async def refuse(websocket: WebSocket, status: int, error: str, detail: str) -> None:
    """Answer the handshake with an HTTP refusal (the Denial Response extension), or a plain
    close before accepting (uvicorn answers 403) where the server lacks it."""
    headers = {"WWW-Authenticate": REALM} if status == 401 else None
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

    charger_id = await run_in_threadpool(check)
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
    hub.loop = asyncio.get_running_loop()
    connection_id = secrets.token_hex(16)

    def take() -> None:
        with transaction(fleet.sessions) as db:
            registry.take(db, charger_id, connection_id, hub.process, utc_now(fleet.clock))

    await run_in_threadpool(take)
    session = StationSession(
        fleet,
        serial,
        charger_id,
        connection_id,
        SocketTransport(websocket),
        hub.wake_event(charger_id),
        hub.events,
    )
    await hub.adopt(session)
    try:
        await session.serve()
    finally:
        hub.drop(session)
