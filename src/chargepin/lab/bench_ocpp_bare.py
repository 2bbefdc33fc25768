"""The baseline of `chargepin bench ocpp`: a bare CSMS made with the `ocpp` package.

The `ocpp` package's v201 ChargePoint (its own schema validation on every message, as in the
fleet's CSMS) on a plain `websockets.serve`, accepting any station without a password and
answering BootNotification, Heartbeat, StatusNotification and SecurityEventNotification with
constants. No database, no authentication, no registry: what serving OCPP costs on this stack and
this machine, so the bench can report the fleet's CSMS as a ratio measured side by side.

The socket settings are uvicorn's as `chargepin fleet serve` uses them, so that the ratio
compares the CSMS and not two WebSocket configurations: listen backlog 2048, frames up to
64 KiB, permessage-deflate declined, a ping every 20 s.

Run as `python -m chargepin.lab.bench_ocpp_bare PORT` (prints `READY port=PORT` once it listens).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chargepin.fleet.csms.station import MAX_FRAME
from chargepin.lab.ports import LOOPBACK

BACKLOG = 2048
"""uvicorn's default listen backlog, which `chargepin fleet serve` keeps."""
PING_INTERVAL = 20.0
"""uvicorn's ws_ping_interval and ws_ping_timeout, and websockets' default."""
NOW = "2026-01-01T00:00:00.000Z"
INTERVAL = 300
"""The heartbeat interval the fleet's CSMS gives (FleetSettings.ocpp_heartbeat_interval)."""

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)


def handles(action: str) -> Callable[[F], F]:
    """The package's `@on(action)`, typed (the package ships no type information)."""
    decorator: Callable[[F], F] = on(action)
    return decorator


class BareStation(ChargePoint):  # type: ignore[misc]  # the ocpp package is untyped
    """One station's connection: every answer is a constant."""

    @handles(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=NOW, interval=INTERVAL, status=RegistrationStatusEnumType.accepted
        )

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=NOW)

    @handles(Action.status_notification)
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @handles(Action.security_event_notification)
    async def on_security_event_notification(
        self, **_: Any
    ) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()


async def handle(connection: ServerConnection) -> None:
    """Serve one station until it hangs up (the identity is the path's last segment)."""
    identity = connection.request.path.rsplit("/", 1)[-1] if connection.request else ""
    station = BareStation(identity, connection, response_timeout=30)
    try:
        await station.start()
    except ConnectionClosed:
        return


async def run(port: int) -> None:
    async with serve(
        handle,
        LOOPBACK,
        port,
        subprotocols=[Subprotocol("ocpp2.0.1")],
        max_size=MAX_FRAME,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_INTERVAL,
        backlog=BACKLOG,
        compression=None,  # as `chargepin fleet serve` (fleet/operations.py)
    ) as server:
        print(f"READY port={port}", flush=True)
        await server.serve_forever()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m chargepin.lab.bench_ocpp_bare PORT", file=sys.stderr)
        return 2
    asyncio.run(run(int(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
