"""A simulated charger that outlives its gateway: it reconnects, with the charger's back-off, to
the next gateway of the list a load balancer would give it, and keeps its security events in a
queue until the CSMS answers them, resending the unanswered ones after reconnecting (as the
charger's durable queue does: charger/ocpp_station.py, `StationLink`).

Each connection is a `SimStation` (tests/helpers/ocpp_station.py) over one `StationState`, so
what the charger applied, and its PIN, survive the reconnections as on a real charger. A test
can hold the answer to the next ticket (`hold_next_ticket`): the station applies the ticket and
then keeps its receipt until `release` or until the connection is lost, the moment at which a
gateway killed leaves a command applied by the charger but never confirmed to the fleet. While
it holds, the station reads nothing else on that connection (the `ocpp` package handles one
incoming frame at a time), so an event it sends meanwhile is stored by the CSMS but its answer
is never read: the station must send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action, DataTransferStatusEnumType
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from chargepin.charger.ocpp_station import StationTimings
from chargepin.core.csms_auth import csms_password
from chargepin.core.csms_link import reconnect_delay
from chargepin.core.ocpp_events import event_id
from tests.helpers.ocpp_station import SUBPROTOCOL, SimStation, StationState, basic, ws_url

T = TypeVar("T")

EVENT_TYPE = "MaintenanceLoginFailed"
"""The type of the events a test queues (a standard one; techInfo names the event)."""


class LinkLost(Exception):
    """The connection closed (or was refused) before the awaited answer."""


@dataclass(frozen=True)
class QueuedEvent:
    queue_id: int
    event_id: str
    tech_info: str
    at: dt.datetime


@dataclass
class EventQueue:
    """The charger's durable security event queue, in memory: an event keeps its queue id, so
    customData.eventId is the same on every resend; it leaves the queue only once answered."""

    serial: str
    pending: list[QueuedEvent] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    """Every event id ever queued, in order."""
    sends: Counter[str] = field(default_factory=Counter)
    """How often each event was sent (more than once: resent after a lost connection)."""
    in_flight: str | None = None
    """The event sent and not yet answered."""
    answer_read: bool = False
    """The answer to the event in flight has been read (it is being acknowledged)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, note: str) -> str:
        """Queue an event (its techInfo says `note`); its event id."""
        queue_id = len(self.queued) + 1
        name = str(event_id(self.serial, queue_id))
        info = json.dumps({"origin": "ble", "reason": note, "epoch": 0}, separators=(",", ":"))
        self.pending.append(QueuedEvent(queue_id, name, info, dt.datetime.now(dt.UTC)))
        self.queued.append(name)
        self.changed.set()
        return name

    def resent(self) -> list[str]:
        return [name for name, count in self.sends.items() if count > 1]


class RoamingStation:
    """One simulated charger's OCPP link over the gateways in `urls` (first: `urls[first]`).

    `run` connects, boots, sends its queued events and answers the CSMS until the connection
    is lost; then waits the charger's back-off (core.csms_link.reconnect_delay with the
    charger's StationTimings) and tries the next gateway of the list; forever, until `stop`.
    """

    def __init__(
        self,
        urls: Sequence[str],
        serial: str,
        secret: bytes,
        *,
        first: int = 0,
        timings: StationTimings | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not urls:
            raise ValueError("a station needs at least one gateway URL")
        self.urls = list(urls)
        self.serial = serial
        self.secret = secret
        self.timings = timings or StationTimings()
        self._rng = rng
        self._next = first
        self.state = StationState()
        self.events = EventQueue(serial)
        self.connected = asyncio.Event()
        self.gateway: int | None = None
        """The index in `urls` of the gateway holding the station now (None: not connected)."""
        self.connections: list[tuple[int, float]] = []
        """Each accepted boot: the gateway's index and when (time.monotonic())."""
        self.failures: list[str] = []
        """Why each connection ended or failed (for the test's messages)."""
        self.held = asyncio.Event()
        """Set once a ticket's answer is being held (hold_next_ticket)."""
        self._hold = False
        self._release = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what a test does -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def hold_next_ticket(self) -> None:
        """Apply the next ticket, then keep its answer until `release` or the link is lost."""
        self._hold = True

    def release(self) -> None:
        self._release.set()

    def unread_event(self) -> str | None:
        """While a ticket's answer is held: the event in flight whose answer this station has
        not read (and will not: it reads nothing while it holds), perhaps stored by the CSMS;
        None when there is none."""
        queue = self.events
        if self.held.is_set() and queue.in_flight is not None and not queue.answer_read:
            return queue.in_flight
        return None

    @property
    def applied(self) -> list[Any]:
        """The tickets the charger applied, in order, across all its connections."""
        return list(self.state.applied)

    # -- the link -------------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            index = self._next % len(self.urls)
            before = len(self.connections)
            try:
                await self._session(index)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException, OCPPError, LinkLost) as error:
                self.failures.append(f"{self.urls[index]}: {type(error).__name__}: {error}")
            # As the charger: a connection that got as far as an accepted boot starts the
            # back-off again. The next attempt goes to the next gateway of the list.
            failures = 0 if len(self.connections) > before else failures + 1
            self._next += 1
            timings = self.timings
            await asyncio.sleep(
                reconnect_delay(failures, self._rng(), timings.backoff_min, timings.backoff_max)
            )

    async def _session(self, index: int) -> None:
        async with connect(
            ws_url(self.urls[index], self.serial),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=basic(self.serial, csms_password(self.secret, self.serial)),
            open_timeout=self.timings.open_timeout,
        ) as connection:
            closed = asyncio.get_running_loop().create_task(connection.wait_closed())
            station = _Station(self, connection, closed)
            receiver = asyncio.get_running_loop().create_task(station.start())
            try:
                boot = await _until_closed(station.boot(), closed)
                if boot.status != "Accepted":
                    raise LinkLost(f"BootNotification answered {boot.status}")
                self.gateway = index
                self.connections.append((index, time.monotonic()))
                self.connected.set()
                await self._send_events(station, closed)
            finally:
                self.connected.clear()
                self.gateway = None
                for task in (receiver, closed):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _send_events(self, station: SimStation, closed: asyncio.Task[None]) -> None:
        """The queue in order, each removed once answered; then wait for more (or the end)."""
        queue = self.events
        while True:
            while queue.pending:
                event = queue.pending[0]
                queue.in_flight = event.event_id
                queue.sends[event.event_id] += 1
                queue.answer_read = False
                await _until_closed(
                    station.security_event(EVENT_TYPE, event.tech_info, event.queue_id, event.at),
                    closed,
                )
                queue.in_flight = None
                queue.pending.pop(0)
            queue.changed.clear()
            await _until_closed(queue.changed.wait(), closed)


class _Station(SimStation):
    """One connection of a RoamingStation: SimStation, able to hold a ticket's answer."""

    def __init__(
        self, roaming: RoamingStation, connection: ClientConnection, closed: asyncio.Task[None]
    ) -> None:
        super().__init__(roaming.serial, connection, roaming.secret, time.time, roaming.state)
        self.roaming = roaming
        self.closed = closed

    async def route_message(self, raw_msg: str | bytes) -> None:
        """The package's, noting when an answer to the station's own call is read."""
        with contextlib.suppress(ValueError, TypeError, IndexError, KeyError):
            if json.loads(raw_msg)[0] in (3, 4):  # CALLRESULT, CALLERROR
                self.roaming.events.answer_read = True
        await super().route_message(raw_msg)

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> call_result.DataTransfer:
        status, answer = self.desk.data_transfer(vendor_id, message_id, data)
        roaming = self.roaming
        if (
            message_id == "ticket"
            and status == DataTransferStatusEnumType.accepted
            and roaming._hold
        ):
            roaming._hold = False
            roaming.held.set()
            with contextlib.suppress(LinkLost):
                await _until_closed(roaming._release.wait(), self.closed)
        if message_id == "ticket" and self.state.drop_before_answering_ticket:
            self.state.drop_before_answering_ticket = False  # as SimStation
            await self._connection.close()
        return call_result.DataTransfer(status=status, data=answer)


async def _until_closed(awaitable: Awaitable[T], closed: asyncio.Task[None]) -> T:
    """The awaitable's result, or LinkLost if the connection closes first."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled() or not task.done():
        raise LinkLost("the connection closed")
    return task.result()
