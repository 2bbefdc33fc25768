"""A CSMS made in the test with the `ocpp` package on a websockets server on 127.0.0.1.

A peer whose protocol code we did not write: the `ocpp` package's own ChargePoint (v201) in the
CSMS role, its own schema validation on every message both ways. It checks Basic auth before
the upgrade as a CSMS must, records what each station sends, and can be told to misbehave.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chargepin.lab.ports import free_ports


@dataclass
class Received:
    """What the CSMS got from one station identity, over all its connections."""

    boots: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every SecurityEventNotification as received, resends included."""
    reports: list[dict[str, Any]] = field(default_factory=list)

    def unique_events(self) -> list[dict[str, Any]]:
        """Each event once per eventId, in the order first received (what a CSMS keeps)."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.events:
            seen.setdefault(event["custom_data"]["event_id"], event)
        return list(seen.values())


class CsmsPeer(ChargePoint):  # type: ignore[misc]
    def __init__(self, csms: TestCsms, identity: str, connection: ServerConnection) -> None:
        super().__init__(identity, connection, response_timeout=5)
        self.csms = csms
        self.received = csms.received.setdefault(identity, Received())

    @on(Action.boot_notification)  # type: ignore[untyped-decorator]
    def on_boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        self.received.boots.append({"reason": reason, **charging_station})
        self.csms.changed()
        return call_result.BootNotification(
            current_time="2026-01-01T00:00:00Z",
            interval=self.csms.heartbeat,
            status=self.csms.boot_status,
        )

    @on(Action.heartbeat)  # type: ignore[untyped-decorator]
    def on_heartbeat(self, **_: Any) -> Any:
        self.received.heartbeats += 1
        self.csms.changed()
        return call_result.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on(Action.status_notification)  # type: ignore[untyped-decorator]
    def on_status(self, **payload: Any) -> Any:
        self.received.statuses.append(payload)
        self.csms.changed()
        return call_result.StatusNotification()

    @on(Action.security_event_notification)  # type: ignore[untyped-decorator]
    async def on_security_event(self, **payload: Any) -> Any:
        if self.csms.event_delay:
            await asyncio.sleep(self.csms.event_delay)
        if self.csms.on_event is not None:
            self.csms.on_event(payload)  # before the answer leaves
        self.received.events.append(payload)
        self.csms.changed()
        return call_result.SecurityEventNotification()

    @on(Action.notify_report)  # type: ignore[untyped-decorator]
    def on_notify_report(self, **payload: Any) -> Any:
        self.received.reports.append(payload)
        self.csms.changed()
        return call_result.NotifyReport()


class TestCsms:
    """The CSMS server: `passwords` maps each identity to the password it must present."""

    __test__ = False

    def __init__(
        self,
        passwords: dict[str, str],
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.passwords = dict(passwords)
        self.tls = tls
        self.port = port if port is not None else free_ports(1)[0]
        self.received: dict[str, Received] = {}
        self.peers: dict[str, CsmsPeer] = {}
        self.refused: list[str] = []
        self.heartbeat = 300
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        """Called with each SecurityEventNotification's payload before it is answered."""
        self.boot_status = RegistrationStatusEnumType.accepted
        self.event_delay = 0.0
        self.on_connect: Callable[[ServerConnection], Any] | None = None
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    def url(self, serial: str = "") -> str:
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ocpp/{serial}"

    async def start(self) -> TestCsms:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            process_request=self._check_auth,
            ssl=self.tls,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def changed(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until `predicate()` holds: re-checked on every message received, and every 20 ms
        for what changes on the station's side (its queue emptied after the last answer)."""

        async def check() -> None:
            while not predicate():
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.02)

        await asyncio.wait_for(check(), timeout)

    def of(self, identity: str) -> Received:
        return self.received.setdefault(identity, Received())

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = request.path.rsplit("/", 1)[-1]
        expected = self.passwords.get(identity)
        header = request.headers.get("Authorization", "")
        given = ""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:]).decode()
            except ValueError:
                given = ""
        if expected is None or not hmac.compare_digest(given, f"{identity}:{expected}"):
            self.refused.append(identity)
            self.changed()
            return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong identity or password\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        identity = connection.request.path.rsplit("/", 1)[-1] if connection.request else ""
        if self.on_connect is not None:
            await self.on_connect(connection)
            return
        peer = CsmsPeer(self, identity, connection)
        self.peers[identity] = peer
        try:
            await peer.start()
        except ConnectionClosed:  # the station went away: the test reads what was received
            return
        finally:
            if self.peers.get(identity) is peer:
                del self.peers[identity]

    async def ask(self, identity: str, payload: Any) -> Any:
        """A CALL from the CSMS to the station, its answer (CallError raised)."""
        return await self.peers[identity].call(payload, suppress=False)


def data_transfer(message_id: str | None, data: Any = None, vendor: str = "org.chargepin") -> Any:
    return call.DataTransfer(vendor_id=vendor, message_id=message_id, data=data)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
