"""One charger's OCPP connection: the `ocpp` package's v201 ChargePoint over a Starlette socket.

The CSMS side of OCPP-J (docs/OCPP.md): BootNotification first (anything else before it is a
SecurityError CallError), then Heartbeat, StatusNotification and SecurityEventNotification.
Owner actions go out from a task of their own (`_deliver`), never from inside a handler: the
package handles incoming calls one at a time on the receive loop, and calling the station from
a handler would stall it (notes/ocpp.md). Every database step runs in the thread pool, in its
own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ocpp import messages as ocpp_messages
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError, SecurityError
from ocpp.messages import Call
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action, DataTransferStatusEnumType, RegistrationStatusEnumType
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from chargepin.core import call_errors
from chargepin.core.csms_auth import new_password, rotated_password_digest
from chargepin.core.errors import InvalidVersion
from chargepin.core.limits import CHALLENGE_SIZE
from chargepin.core.ocpp_events import VENDOR_ID
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.csms import events, outbox, registry
from chargepin.fleet.db import transaction
from chargepin.fleet.models import Charger
from chargepin.fleet.times import utc_now

if TYPE_CHECKING:
    from chargepin.fleet.app import FleetState

logger = logging.getLogger(__name__)
wire_logger = logging.getLogger(f"{__name__}.wire")
"""The ocpp package logs every message it sends and receives at INFO on the logger it is
given; a SetVariables carries a charger's new password in clear, so that log stays at WARNING
(errors only), whatever the service's level."""
wire_logger.setLevel(logging.WARNING)

ocpp_messages.ASYNC_VALIDATION = False
"""The ocpp package validates every message against its JSON schema in asyncio's default thread
pool: CPU work that holds the GIL either way, plus two thread hops per message. Inline, the
CSMS spent 0.2 ms less CPU per SecurityEventNotification (docs/PERFORMANCE.md, "OCPP")."""

MAX_FRAME = 64 * 1024
"""The largest OCPP-J frame taken (characters): the largest message we expect (a DataTransfer
with a sealed ticket) is under 2 KiB; the HTTP bodies have the same 64 KiB bound."""
RESPONSE_TIMEOUT = 30
"""Seconds the CSMS waits for a station's answer to one of its calls."""
MAX_MALFORMED = 10
"""Frames that are not OCPP-J messages (not a JSON array) a connection may send before it is
closed (1002): a broken or hostile station does not keep a socket, and the log, busy."""
MAX_UNSOLICITED = 8
"""CallResults nobody waits for that are kept before they are dropped (a station cannot grow
the queue without bound)."""
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def handles(action: str) -> Callable[[F], F]:
    """The package's `@on(action)`, typed (the package ships no type information)."""
    decorator: Callable[[F], F] = on(action)
    return decorator


class StationGone(Exception):
    """The socket closed (or was closed for a protocol violation)."""


class SocketTransport:
    """The `send`/`recv` the ocpp package needs, over Starlette's WebSocket.

    Text frames only (OCPP-J), at most MAX_FRAME characters: a binary or oversized frame closes
    the socket (1003, 1009) instead of reaching the JSON parser. Sends are serialised: the
    receive loop's answers and the delivery task's calls share the socket.
    """

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._send_lock = asyncio.Lock()
        self.closed = False

    async def recv(self) -> str:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError) as error:
            raise StationGone(str(error)) from None
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise StationGone("the station closed the connection")
        text = message.get("text")
        if text is None:
            await self.close(1003, "OCPP-J frames are text")
            raise StationGone("binary frame")
        if len(text) > MAX_FRAME:
            await self.close(1009, f"frames are limited to {MAX_FRAME} characters")
            raise StationGone("oversized frame")
        return str(text)

    async def send(self, text: str) -> None:
        if self.closed:
            raise StationGone("the connection is closed")
        async with self._send_lock:
            try:
                await self.websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as error:
                self.closed = True
                raise StationGone(str(error)) from None

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError, OSError):  # already closing on the other side
            await self.websocket.close(code, reason)


class StationSession(ChargePoint):  # type: ignore[misc]  # the ocpp package is untyped
    """The CSMS's half of one charger's OCPP connection."""

    def __init__(
        self,
        fleet: FleetState,
        serial: str,
        charger_id: int,
        connection_id: str,
        transport: SocketTransport,
        wake: asyncio.Event,
        writer: events.EventWriter,
    ) -> None:
        super().__init__(serial, transport, response_timeout=RESPONSE_TIMEOUT, logger=wire_logger)
        self.fleet = fleet
        self.serial = serial
        self.charger_id = charger_id
        self.connection_id = connection_id
        self.transport = transport
        self.wake = wake
        self.events = writer
        self.booted = asyncio.Event()
        self.superseded = False
        self.taken = 0
        """Its turn as it took the charger in the registry (`route.Hub.adopt`)."""

    # ------------------------------------------------------------------ the connection's life

    async def serve(self) -> None:
        """Handle the station's messages until the socket closes; deliver commands meanwhile."""
        delivery = asyncio.create_task(self._deliver(), name=f"ocpp-deliver-{self.serial}")
        malformed = 0
        try:
            while True:
                message = await self.transport.recv()
                if not _is_rpc_frame(message):
                    malformed += 1
                    logger.warning("%s: not an OCPP-J frame (%d)", self.serial, malformed)
                    if malformed >= MAX_MALFORMED:
                        await self.transport.close(1002, "too many frames that are not OCPP-J")
                        raise StationGone("too many malformed frames")
                    continue
                try:
                    await self.route_message(message)
                except StationGone:
                    raise
                except Exception:  # a peer's malformed message never ends the process
                    logger.warning("%s: message not handled: %.200r", self.serial, message)
                if self.superseded:
                    await self.transport.close(1000, "a newer connection of this charger took over")
                    raise StationGone("superseded by a newer connection")
                self._drop_unsolicited()
        except StationGone as gone:
            logger.info("%s: connection ended: %s", self.serial, gone)
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
            await self._db(registry.release, self.charger_id, self.connection_id, self._now())

    async def close(self, reason: str) -> None:
        """Close this socket (a newer connection took the charger over)."""
        self.superseded = True
        await self.transport.close(1000, reason[:120])

    async def _handle_call(self, msg: Call) -> None:
        """The package's, but an action without a handler gets OCPP-J's code for it
        (core.call_errors: the package has NotImplemented and NotSupported the wrong way round)."""
        if msg.action not in self.route_map:
            raise unhandled_call(msg.action)
        await super()._handle_call(msg)

    def _drop_unsolicited(self) -> None:
        # The package queues every CallResult/CallError for call() to pick up; with no call in
        # flight nobody will, and a station could grow the queue by sending them unasked.
        queue = self._response_queue
        if not self._call_lock.locked():
            while queue.qsize() > MAX_UNSOLICITED:
                queue.get_nowait()

    def _now(self) -> dt.datetime:
        return utc_now(self.fleet.clock)

    async def _db(self, step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `step(db, *args)` in one transaction on the thread pool."""

        def unit() -> T:
            with transaction(self.fleet.sessions) as db:
                return step(db, *args, **kwargs)

        return await run_in_threadpool(unit)

    async def _seen(self, **facts: object) -> None:
        """Mark the charger heard; a connection that lost the registry row closes."""
        held = await self._db(
            registry.touch, self.charger_id, self.connection_id, self._now(), **facts
        )
        if not held:
            # Answered first (the CallError says why), then closed by the receive loop.
            self.superseded = True
            raise SecurityError(description="a newer connection of this charger took over")

    def _require_boot(self) -> None:
        if not self.booted.is_set():
            raise SecurityError(description="send BootNotification first (OCPP 2.0.1 B01)")

    # ------------------------------------------------------------------ calls from the station

    @handles(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> call_result.BootNotification:
        claimed = charging_station.get("serial_number")
        now = self._now()
        interval = self.fleet.settings.ocpp_heartbeat_interval
        if claimed is not None and claimed != self.serial:
            logger.warning("%s: BootNotification names serial %.40r", self.serial, claimed)
            return call_result.BootNotification(
                current_time=now.isoformat(),
                interval=interval,
                status=RegistrationStatusEnumType.rejected,
                status_info={
                    "reason_code": "SerialMismatch",
                    "additional_info": "serialNumber must be this connection's identity",
                },
            )
        firmware = charging_station.get("firmware_version")
        if await self._db(self._record_boot, firmware, now):
            self.wake.set()  # commands are waiting: deliver them now
        self.booted.set()
        return call_result.BootNotification(
            current_time=now.isoformat(),
            interval=interval,
            status=RegistrationStatusEnumType.accepted,
        )

    def _record_boot(self, db: Session, firmware: object, now: dt.datetime) -> bool:
        """Mark the connection booted and record the firmware; whether commands are waiting
        (read in the same transaction, so a boot storm costs one thread-pool hop per charger,
        not two)."""
        registry.touch(db, self.charger_id, self.connection_id, now, booted_at=now)
        self._record_firmware(db, firmware)
        return outbox.next_for(db, self.charger_id) is not None

    def _record_firmware(self, db: Session, firmware: object) -> None:
        if firmware is None:
            return
        try:
            version = FirmwareVersion.parse(str(firmware))
        except InvalidVersion as error:
            # A garbage firmware string is kept out of the database (and its PIN class).
            logger.warning("%s: firmware not recorded: %s", self.serial, error)
            return
        charger = db.get(Charger, self.charger_id)
        if charger is not None and charger.firmware != version:
            logger.info("%s: firmware %s -> %s", self.serial, charger.firmware, version)
            charger.firmware = version

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        self._require_boot()
        await self._seen()
        self.wake.set()  # a command queued by another process is picked up at least this often
        return call_result.Heartbeat(current_time=self._now().isoformat())

    @handles(Action.status_notification)
    async def on_status_notification(
        self, connector_status: str, **_: Any
    ) -> call_result.StatusNotification:
        self._require_boot()
        await self._seen(connector_status=str(connector_status)[:20])
        return call_result.StatusNotification()

    @handles(Action.security_event_notification)
    async def on_security_event_notification(
        self,
        type: str,  # the OCPP field's name
        timestamp: str,
        tech_info: str | None = None,
        custom_data: Any = None,
        **_: Any,
    ) -> call_result.SecurityEventNotification:
        self._require_boot()
        event = events.IncomingEvent(
            self.charger_id, type, timestamp, tech_info, custom_data, self._now()
        )
        stored = await self.events.store(event)
        if not stored:
            logger.info("%s: security event resent, already stored", self.serial)
        return call_result.SecurityEventNotification()

    @handles(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        self._require_boot()
        if vendor_id != VENDOR_ID:
            return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_message_id)

    # ------------------------------------------------------------------ owner actions out

    async def _deliver(self) -> None:
        """Send the charger's open commands, oldest first, whenever woken (a new command here,
        a boot that found commands waiting, a heartbeat)."""
        await self.booted.wait()
        # The boot read the outbox: with nothing waiting, the first look is at the first wake.
        # A command queued after that read wakes this event, which nothing has cleared yet.
        await self.wake.wait()
        while True:
            self.wake.clear()
            pending = await self._db(outbox.next_for, self.charger_id)
            if pending is None:
                await self.wake.wait()
                continue
            if not await self._deliver_one(pending):
                # No answer: try again when woken (next heartbeat or command), not in a loop.
                await self.wake.wait()

    async def _deliver_one(self, pending: outbox.Pending) -> bool:
        """Challenge, ticket, receipt (or SetVariables for a password). False when the station
        did not answer."""
        try:
            if pending.action == outbox.CSMS_PASSWORD:
                await self._set_password(pending)
                return True
            answer = await self.call(
                call.DataTransfer(vendor_id=VENDOR_ID, message_id="challenge"), suppress=False
            )
            challenge = _challenge(answer)
            if challenge is None:
                await self._db(
                    outbox.fail,
                    pending.id,
                    self._now(),
                    "no_challenge",
                    "the charger gave no challenge; it may not support owner actions over OCPP",
                )
                return True
            blob = await self._db(
                outbox.seal,
                self.fleet.vault,
                pending.id,
                challenge,
                self._now(),
                self.connection_id,
            )
            if blob is None:
                return True
            answer = await self.call(
                call.DataTransfer(vendor_id=VENDOR_ID, message_id="ticket", data=blob.hex()),
                suppress=False,
            )
            state = await self._db(
                outbox.conclude,
                self.fleet.vault,
                pending.id,
                answer.status == DataTransferStatusEnumType.accepted,
                answer.data,
                self._now(),
            )
            logger.info("%s: %s command %d %s", self.serial, pending.action, pending.id, state)
            return True
        except outbox.NotHolder:
            # Another connection (in this gateway or another) holds the charger now: it
            # delivers; this one sends nothing more and closes.
            await self.close("a newer connection of this charger took over")
            return False
        except OCPPError as error:
            await self._db(
                outbox.fail, pending.id, self._now(), "call_error", f"{error.code}: {error}"
            )
            return True
        except TimeoutError:
            await self._db(
                outbox.unanswered, pending.id, self._now(), "the charger did not answer in time"
            )
            return False

    async def _set_password(self, pending: outbox.Pending) -> None:
        """SetVariables SecurityCtrlr.BasicAuthPassword with a fresh password: its digest is
        written before it is sent (a lost answer still lets the charger in with it), the
        password itself never leaves this coroutine."""
        password = new_password()
        digest = rotated_password_digest(password)
        if not await self._db(
            outbox.password_sent, pending.id, digest, self._now(), self.connection_id
        ):
            return
        answer = await self.call(
            call.SetVariables(
                set_variable_data=[
                    {
                        "attribute_value": password,
                        "component": {"name": "SecurityCtrlr"},
                        "variable": {"name": "BasicAuthPassword"},
                    }
                ]
            ),
            suppress=False,
        )
        results = answer.set_variable_result
        first = results[0] if isinstance(results, list) and results else {}
        status = first.get("attribute_status") if isinstance(first, dict) else None
        state = await self._db(
            outbox.password_answered, pending.id, str(status or "no answer"), self._now()
        )
        logger.info("%s: password rotation %d %s", self.serial, pending.id, state)


V201_ACTIONS = frozenset(action.value for action in Action)
"""The actions of OCPP 2.0.1: recognised, if not all handled (core.call_errors)."""
_UNHANDLED: dict[str, type[OCPPError]] = {
    call_errors.NOT_IMPLEMENTED: OcppNotImplemented,
    call_errors.NOT_SUPPORTED: NotSupportedError,
}


def unhandled_call(action: str) -> OCPPError:
    """The package's exception for core.call_errors' answer to an unhandled `action`."""
    answer = call_errors.unhandled_action(action, V201_ACTIONS)
    return _UNHANDLED[answer.code](description=answer.description, details=answer.details)


def _is_rpc_frame(message: str) -> bool:
    """Whether `message` is a JSON array with a message type first (OCPP-J's RPC framework);
    anything else is dropped here, before the package logs it with a traceback."""
    try:
        value = json.loads(message)
    except ValueError:
        return False
    return isinstance(value, list) and len(value) >= 3 and value[0] in (2, 3, 4)


def _challenge(answer: Any) -> bytes | None:
    """The challenge in a DataTransfer answer, if it is one (CHALLENGE_SIZE octets in hex)."""
    if answer.status != DataTransferStatusEnumType.accepted or not isinstance(answer.data, str):
        return None
    if len(answer.data) != 2 * CHALLENGE_SIZE or not _HEX.fullmatch(answer.data):
        return None
    return bytes.fromhex(answer.data)
