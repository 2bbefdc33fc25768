"""The charger as an OCPP 2.0.1 Charging Station: its link to a CSMS, beside the Bluetooth side.

`StationLink` is one task next to the daemon: it connects (Basic auth, subprotocol
`ocpp2.0.1`), sends BootNotification, Heartbeat at the CSMS's interval, the connector's
StatusNotification and StartupOfTheDevice, then the security events of the state file's queue in
order, deleting each only once the CSMS answered it. On any failure it closes and reconnects
with doubling back-off and jitter (core.csms_link); Bluetooth never waits for it. `Station` is
one connection's `ocpp` ChargePoint: what the CSMS may ask (DataTransfer with our vendor id,
the device model), answered through the same functions as the GATT side (docs/OCPP.md).

The `ocpp` package's receive loop is replaced (`Station.start`): it dropped unparseable frames
without a word, queued every stray CallResult without bound, and one exception ended the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ocpp import messages as ocpp_messages
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult, unpack
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call
from ocpp.v201.enums import (
    Action,
    BootReasonEnumType,
    ConnectorStatusEnumType,
    DataTransferStatusEnumType,
    GenericDeviceModelStatusEnumType,
    RegistrationStatusEnumType,
    ReportBaseEnumType,
    ResetEnumType,
    ResetStatusEnumType,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from chargepin.charger.owner_actions import (
    ActionNotAllowed,
    NeedsPairedLink,
    TicketRejected,
    rejected,
)
from chargepin.core import call_errors, device_model, lockout, ocpp_events
from chargepin.core.csms_auth import basic_authorization
from chargepin.core.csms_link import SUBPROTOCOL, CsmsEndpoint, reconnect_delay
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts, Origin
from chargepin.core.policy import pin_policy
from chargepin.core.protocol import (
    MAX_TICKET_SIZE,
    AdminResult,
    ChargerStatus,
    ChargingState,
    ControlCommand,
    ControlOp,
)
from chargepin.core.tickets import Action as TicketAction

if TYPE_CHECKING:
    from chargepin.charger.daemon import ChargerDaemon

logger = logging.getLogger(__name__)

wire_logger = logging.getLogger("chargepin.charger.ocpp_wire")
"""The `ocpp` package logs every frame at INFO: tickets and BasicAuthPassword writes included.
Kept at WARNING so that no password lands in a log by a debug setting elsewhere."""
wire_logger.setLevel(logging.WARNING)

ocpp_messages.ASYNC_VALIDATION = False
"""The `ocpp` package validates every message against its JSON schema in asyncio's thread pool:
CPU work under the GIL either way, plus two thread hops per message. Inline, a security event
costs the charger 0.2 ms less CPU (docs/PERFORMANCE.md, "A security event on the charger"); the
fleet's CSMS does the same (fleet/csms/station.py)."""

VENDOR: Final = "chargepin"
"""BootNotification chargingStation.vendorName."""

MAX_FRAME: Final = 64 * 1024
"""Largest frame taken from the CSMS; a bigger one closes the link (1009) and it reconnects."""

MAX_STRAY_RESULTS: Final = 4
"""CallResults waiting for `call` at most; beyond, a CSMS's stray answers are dropped."""

OCPP_ACTIONS: Final = frozenset(TicketAction) - {TicketAction.ADMIT_PAIRING}
"""Tickets the OCPP link applies: all but admit_pairing, which admits a Bluetooth link."""

BATCH: Final = 16
"""Queued events read at a time (the queue holds up to 1,000)."""

CHALLENGE_LIFETIME: Final = 120.0
"""Seconds a DataTransfer challenge stays usable (as the GATT one)."""


@dataclass(frozen=True)
class StationTimings:
    """How long the link waits for things; the tests shorten them."""

    response_timeout: float = 30.0
    """An unanswered CALL after this many seconds means the link is dead: reconnect."""
    open_timeout: float = 10.0
    backoff_min: float = 1.0
    backoff_max: float = 300.0
    default_heartbeat: float = 300.0
    """Heartbeat interval when the CSMS gives 0 or nonsense."""
    ping_interval: float | None = 30.0


@dataclass(frozen=True)
class StationConfig:
    """Where and how to connect: the checked endpoint and the TLS trust."""

    endpoint: CsmsEndpoint
    ca_file: Path | None = None
    timings: StationTimings = StationTimings()
    boot_reason: BootReasonEnumType = BootReasonEnumType.power_up


def ssl_context(config: StationConfig) -> ssl.SSLContext | None:
    """TLS for wss:// (profile 2): the system's CAs, or only `--csms-ca` when it is given."""
    if config.endpoint.security_profile < 2:
        return None
    context = ssl.create_default_context(
        cafile=str(config.ca_file) if config.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP 2.0.1 A00.FR.310
    return context


class Station(ChargePoint):  # type: ignore[misc]  # the ocpp package has no type hints
    """One OCPP connection's Charging Station: answers the CSMS's calls, makes ours.

    The DataTransfer challenge belongs to this connection: a reconnect forgets it.
    """

    def __init__(
        self,
        daemon: ChargerDaemon,
        connection: ClientConnection,
        timeout: float,
        security_profile: int = 1,
        resets: Resets | None = None,
    ):
        super().__init__(
            daemon.store.identity.serial,
            connection,
            response_timeout=timeout,
            logger=wire_logger,
        )
        self.daemon = daemon
        self.security_profile = security_profile
        self.resets = resets
        self._challenge: bytes | None = None
        self._challenge_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.malformed = 0
        """Frames from the CSMS that were not OCPP-J at all (answered when possible)."""

    # -- the receive loop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Route every frame until the connection closes; a bad frame never ends the loop."""
        async for frame in self._connection:
            await self.route_message(frame)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """One frame: a CALL to answer, or the answer to our outstanding CALL."""
        if isinstance(raw_msg, bytes):
            self.malformed += 1
            logger.warning("%s: a binary frame from the CSMS ignored (OCPP-J is text)", self.id)
            return
        try:
            message = unpack(raw_msg)
        except (OCPPError, RecursionError, ValueError) as error:
            # RecursionError: json.loads on a frame of 10,000 nested brackets.
            self.malformed += 1
            logger.warning("%s: a frame from the CSMS is not OCPP-J: %s", self.id, _describe(error))
            await self._answer_unparseable(raw_msg)
            return
        if isinstance(message, Call):
            if not isinstance(message.unique_id, str) or not isinstance(message.action, str):
                self.malformed += 1
                return
            try:
                await self._handle_call(message)
            except OCPPError as error:
                await self._send(message.create_call_error(error).to_json())
            except Exception:
                # The ocpp package raises more than OCPPError on odd payloads: answer, go on.
                logger.exception("%s: handling %s failed", self.id, message.action)
                await self._send(message.create_call_error(Exception()).to_json())
        elif (
            isinstance(message, CallResult | CallError)
            and self._call_lock.locked()
            and self._response_queue.qsize() < MAX_STRAY_RESULTS
        ):
            # Only while our CALL waits, and never many: a CSMS's stray answers cost nothing.
            self._response_queue.put_nowait(message)

    async def _handle_call(self, msg: Call) -> None:
        """The package's, but an action without a handler gets OCPP-J's code for it
        (core.call_errors: the package has NotImplemented and NotSupported the wrong way round)."""
        if msg.action not in self.route_map:
            raise unhandled_call(msg.action)
        await super()._handle_call(msg)

    async def _answer_unparseable(self, raw: str) -> None:
        """OCPP-J 4.2.3: a CALL we cannot read gets RpcFrameworkError if its id can be found."""
        with contextlib.suppress(ValueError, TypeError, IndexError, RecursionError):
            frame = json.loads(raw)
            if isinstance(frame, list) and frame[0] == 2 and isinstance(frame[1], str):
                error = [4, frame[1][:36], "RpcFrameworkError", "not an OCPP-J CALL", {}]
                await self._send(json.dumps(error, separators=(",", ":")))

    # -- what the CSMS may ask -----------------------------------------------------------------

    @on(Action.data_transfer)  # type: ignore[untyped-decorator]
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        """Owner actions: `challenge` and `ticket` under our vendor id (docs/OCPP.md)."""
        from ocpp.v201 import call_result

        if vendor_id != ocpp_events.VENDOR_ID:
            return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)
        if message_id == "challenge":
            self._challenge = self.daemon.new_challenge()
            self._challenge_at = self.daemon.clock.now()
            return call_result.DataTransfer(
                status=DataTransferStatusEnumType.accepted, data=self._challenge.hex()
            )
        if message_id == "ticket":
            result = await self._ticket(data)
            status = (
                DataTransferStatusEnumType.accepted
                if result.ok
                else DataTransferStatusEnumType.rejected
            )
            return call_result.DataTransfer(status=status, data=admin_result_data(result))
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_message_id)

    async def _ticket(self, data: Any) -> AdminResult:
        """Apply the ticket in `data` (hex) against this connection's challenge, consumed."""
        daemon = self.daemon
        now = daemon.clock.now()
        challenge, self._challenge = self._challenge, None
        if challenge is not None and now - self._challenge_at > CHALLENGE_LIFETIME:
            challenge = None
        blob = _ticket_bytes(data)
        if blob is None:
            detail = (
                f"the ticket must be the hex of at most {MAX_TICKET_SIZE} octets, as the app "
                "writes them over Bluetooth"
            )
            daemon.store.record_event(
                EventKind.TICKET_REJECTED,
                f"malformed: {detail}",
                now,
                EventFacts(origin=Origin.OCPP, reason="malformed"),
            )
            return rejected("malformed", detail)
        try:
            outcome = await daemon.apply_owner_ticket(
                blob, challenge, now, Origin.OCPP, None, OCPP_ACTIONS
            )
        except NeedsPairedLink as error:
            return rejected(
                "not_allowed",
                f"{error.action.value} admits a phone's Bluetooth link; it has no use over OCPP",
                error.action.value,
            )
        except TicketRejected as error:
            return rejected(error.reason, error.detail)
        except ActionNotAllowed as error:
            return rejected("not_allowed", error.reason, error.action.value)
        daemon.drop_links_now(outcome)
        return outcome.result

    # -- Reset (B11, B12) ------------------------------------------------------------------------

    @on(Action.reset)  # type: ignore[untyped-decorator]
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        """The whole charger restarts (Immediate, or OnIdle once charging ended: Scheduled)."""
        from ocpp.v201 import call_result

        if evse_id is not None:
            return call_result.Reset(
                status=ResetStatusEnumType.rejected,
                status_info={
                    "reason_code": "EvseResetUnsupported",
                    "additional_info": "the charger resets as a whole: send Reset without evseId",
                },
            )
        if self.resets is None:
            return call_result.Reset(
                status=ResetStatusEnumType.rejected,
                status_info={
                    "reason_code": "NoRestart",
                    "additional_info": "nothing restarts this daemon: reset it where it runs",
                },
            )
        return call_result.Reset(status=self.resets.status(type))

    @after(Action.reset)  # type: ignore[untyped-decorator]
    def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        # After the answer went out: the restart closes this connection.
        if evse_id is None and self.resets is not None:
            self.resets.request(type)

    # -- the device model (core.device_model) ---------------------------------------------------

    def snapshot(self) -> device_model.Snapshot:
        """The charger's state as the device model reads it, now."""
        daemon = self.daemon
        store, now, config = daemon.store, daemon.clock.now(), daemon.profile.lockout
        state = store.lockout_state
        identity = store.identity
        locked = lockout.is_locked(config, state, now)
        return device_model.Snapshot(
            pin_enabled=store.pin_enabled,
            pin_class=pin_policy(identity.model, identity.firmware, identity.produced).mode,
            profile=store.profile,
            epoch=store.epoch,
            failed_attempts=len(state.prune(config, now).failures),
            locked_until=now + lockout.retry_after(config, state, now) if locked else None,
            bonded_phones=tuple(bond.address for bond in store.keystore.list_bonds()),
            identity=identity.serial,
            security_profile=self.security_profile,
        )

    @on(Action.get_variables)  # type: ignore[untyped-decorator]
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        """GetVariables (B06): WriteOnly variables (Pin, BasicAuthPassword) answer Rejected."""
        from ocpp.v201 import call_result

        snapshot = self.snapshot()
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            attribute_type = item.get("attribute_type")
            read = device_model.read(snapshot, _name(component), _name(variable), attribute_type)
            result: dict[str, Any] = {
                "attribute_status": read.status.value,
                "attribute_type": attribute_type or device_model.ACTUAL,
                "component": component,
                "variable": variable,
            }
            if read.value is not None:
                result["attribute_value"] = read.value
            if read.reason is not None:
                result["attribute_status_info"] = {"reason_code": read.reason}
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)  # type: ignore[untyped-decorator]
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        """SetVariables (B05): BluetoothPin.Enabled and .Pin with the ticket rules,
        SecurityCtrlr.BasicAuthPassword kept for the next connection."""
        from ocpp.v201 import call_result

        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            attribute_type = item.get("attribute_type")
            write = device_model.parse_write(
                _name(component), _name(variable), attribute_type, str(item["attribute_value"])
            )
            status, reason, detail = await self._write(write)
            result: dict[str, Any] = {
                "attribute_status": status.value,
                "attribute_type": attribute_type or device_model.ACTUAL,
                "component": component,
                "variable": variable,
            }
            if reason:
                result["attribute_status_info"] = {
                    "reason_code": reason[:20],
                    "additional_info": detail[:512],
                }
            results.append(result)
        return call_result.SetVariables(set_variable_result=results)

    async def _write(self, write: device_model.Write) -> tuple[device_model.SetStatus, str, str]:
        accepted = device_model.SetStatus.ACCEPTED
        refused = device_model.SetStatus.REJECTED
        if isinstance(write, device_model.Refused):
            return write.status, write.reason, write.detail
        if isinstance(write, device_model.NewPassword):
            self.daemon.store.set_csms_password(write.password)
            return accepted, "", ""
        try:
            await self.daemon.apply_owner_setting(
                write.action, dict(write.args), self.daemon.clock.now()
            )
        except ActionNotAllowed as error:
            return refused, "NotAllowed", error.reason
        except TicketRejected as error:
            return refused, "InvalidValue", error.detail
        return accepted, "", ""

    @on(Action.get_base_report)  # type: ignore[untyped-decorator]
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        """GetBaseReport (B07): Full or Configuration inventory, then NotifyReport."""
        from ocpp.v201 import call_result

        status = (
            GenericDeviceModelStatusEnumType.accepted
            if report_base in _REPORTS
            else GenericDeviceModelStatusEnumType.not_supported
        )
        return call_result.GetBaseReport(status=status)

    @after(Action.get_base_report)  # type: ignore[untyped-decorator]
    def after_get_base_report(self, request_id: int, report_base: str, **_: Any) -> None:
        if report_base in _REPORTS:
            self.spawn(self._notify_report(request_id, report_base))

    async def _notify_report(self, request_id: int, report_base: str) -> None:
        configuration_only = report_base == ReportBaseEnumType.configuration_inventory
        data = device_model.report(self.snapshot(), configuration_only)
        try:
            await self.call(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=ocpp_events.timestamp(self.daemon.clock.now()),
                    seq_no=0,
                    tbc=False,
                    report_data=data,
                ),
                suppress=False,
            )
        except (OCPPError, TimeoutError, WebSocketException) as error:
            logger.warning("NotifyReport %s not delivered: %s", request_id, _describe(error))

    # -- what the station sends ----------------------------------------------------------------

    async def boot(self, reason: BootReasonEnumType) -> tuple[bool, float]:
        """BootNotification; (accepted, interval the CSMS gave)."""
        identity = self.daemon.store.identity
        response = await self.call(
            call.BootNotification(
                charging_station={
                    "model": identity.model[:20],
                    "vendor_name": VENDOR,
                    "firmware_version": str(identity.firmware)[:50],
                    "serial_number": identity.serial[:25],
                },
                reason=reason,
            ),
            suppress=False,
        )
        accepted = response.status == RegistrationStatusEnumType.accepted
        return accepted, float(response.interval)

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat(), suppress=False)

    async def status(self) -> None:
        """StatusNotification for EVSE 1 connector 1 (the one charging point the daemon drives)."""
        idle = self.daemon.evse.status.state is ChargingState.IDLE
        await self.call(
            call.StatusNotification(
                timestamp=ocpp_events.timestamp(self.daemon.clock.now()),
                connector_status=(
                    ConnectorStatusEnumType.available if idle else ConnectorStatusEnumType.occupied
                ),
                evse_id=1,
                connector_id=1,
            ),
            suppress=False,
        )

    async def send_event(self, event_id: int, event_type: str, at: float, info: str) -> None:
        """One queued security event; raises if the CSMS did not answer it.

        Not validated against the schema here: the frame is made by core.ocpp_events (type
        from a table, techInfo cut to 255) and every CSMS validates it as it arrives (the
        tests' CSMS, the fleet's, ocpp-rpc in strict mode in the interop test), and its
        answer is only waited for, never read. That is half the `ocpp` package's CPU per event
        (docs/PERFORMANCE.md, "A security event on the charger").
        """
        await self.call(
            call.SecurityEventNotification(
                type=event_type,
                timestamp=ocpp_events.timestamp(at),
                tech_info=info,
                custom_data=ocpp_events.custom_data(self.id, event_id),
            ),
            suppress=False,
            skip_schema_validation=True,
        )

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()


_REPORTS: Final = frozenset(
    {ReportBaseEnumType.full_inventory, ReportBaseEnumType.configuration_inventory}
)
"""The base reports the charger makes (SummaryInventory is optional: NotSupported)."""


V201_ACTIONS: Final = frozenset(action.value for action in Action)
"""The actions of OCPP 2.0.1: recognised, if not all handled (core.call_errors)."""
_UNHANDLED: Final[dict[str, type[OCPPError]]] = {
    call_errors.NOT_IMPLEMENTED: OcppNotImplemented,
    call_errors.NOT_SUPPORTED: NotSupportedError,
}


def unhandled_call(action: str) -> OCPPError:
    """The package's exception for core.call_errors' answer to an unhandled `action`."""
    answer = call_errors.unhandled_action(action, V201_ACTIONS)
    return _UNHANDLED[answer.code](description=answer.description, details=answer.details)


def _name(element: Any) -> str:
    name = element.get("name") if isinstance(element, dict) else None
    if not isinstance(name, str) or element.get("instance") or element.get("evse"):
        return ""  # no variable of ours has an instance or an EVSE: unknown
    return name


def _ticket_bytes(data: Any) -> bytes | None:
    if not isinstance(data, str) or not 0 < len(data) <= 2 * MAX_TICKET_SIZE:
        return None
    try:
        return bytes.fromhex(data)
    except ValueError:
        return None


def admin_result_data(result: AdminResult) -> dict[str, Any]:
    """DataTransfer data of an owner action's result (docs/OCPP.md): the GATT AdminResult."""
    if result.ok:
        return {
            "ok": True,
            "action": result.action,
            "receipt": result.receipt.hex(),
            "phones": list(result.phones),
        }
    return {"ok": False, "reason": result.reason, "detail": result.detail, "action": result.action}


class StationLink:
    """The OCPP link's life: connect, boot, serve and send, reconnect; beside the daemon."""

    def __init__(
        self,
        daemon: ChargerDaemon,
        config: StationConfig,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.daemon = daemon
        self.config = config
        self._rng = rng
        self._wake = asyncio.Event()
        self._remove_listener = daemon.store.on_queued(self._wake.set)
        self.connected = asyncio.Event()
        self.connections = 0
        """Connections that reached an accepted BootNotification (for tests and reports)."""
        self.attempts = 0
        """Connections tried, failed or not (for tests and reports)."""
        self.station: Station | None = None
        self._task: asyncio.Task[None] | None = None
        self.resets = Resets(daemon)

    def start(self) -> None:
        """Start the link task (returns at once: Bluetooth never waits for the CSMS)."""
        self.daemon.store.queue_security_event(
            ocpp_events.startup_event(
                self.daemon.store.epoch, str(self.daemon.store.identity.firmware)
            ),
            self.daemon.clock.now(),
        )
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        self._remove_listener()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        """Connect, serve until the link fails, wait, again; forever (until cancelled)."""
        failures = 0
        while True:
            before = self.connections
            self.attempts += 1
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (
                OSError,
                TimeoutError,
                WebSocketException,
                OCPPError,
                UnknownCallErrorCodeError,
                LinkFailed,
            ) as error:
                logger.warning("OCPP link to %s: %s", self.config.endpoint.host, _describe(error))
            except Exception:
                logger.exception("OCPP link to %s failed", self.config.endpoint.host)
            # A connection that got as far as an accepted boot starts the back-off again.
            failures = 0 if self.connections > before else failures + 1
            timings = self.config.timings
            delay = reconnect_delay(failures, self._rng(), timings.backoff_min, timings.backoff_max)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection, until it fails (it never ends otherwise)."""
        config, store = self.config, self.daemon.store
        timings = config.timings
        headers = {"Authorization": basic_authorization(store.identity.serial, store.csms_password)}
        async with connect(
            config.endpoint.url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers=headers,
            ssl=ssl_context(config),
            open_timeout=timings.open_timeout,
            ping_interval=timings.ping_interval,
            ping_timeout=timings.ping_interval,
            max_size=MAX_FRAME,
            max_queue=16,
            proxy=None,
            user_agent_header=f"chargepin/{store.identity.firmware}",
        ) as websocket:
            if websocket.subprotocol != SUBPROTOCOL:
                raise LinkFailed(
                    f"the CSMS did not accept the subprotocol {SUBPROTOCOL} "
                    f"(answered {websocket.subprotocol!r}); it is not an OCPP 2.0.1 CSMS"
                )
            station = Station(
                self.daemon,
                websocket,
                timings.response_timeout,
                config.endpoint.security_profile,
                self.resets,
            )
            self.station = station
            receiver = asyncio.get_running_loop().create_task(station.start())
            try:
                await self._serve(station, receiver)
            finally:
                self.station = None
                self.connected.clear()
                receiver.cancel()
                station.cancel_tasks()
                with contextlib.suppress(BaseException):
                    await receiver

    async def _serve(self, station: Station, receiver: asyncio.Task[None]) -> None:
        timings = self.config.timings
        accepted, interval = await _until_closed(station.boot(self.config.boot_reason), receiver)
        while not accepted:
            # Pending or Rejected: only BootNotification again, after the interval (B02, B03).
            await _until_closed(asyncio.sleep(_interval(interval, timings)), receiver)
            accepted, interval = await _until_closed(
                station.boot(BootReasonEnumType.unknown), receiver
            )
        self.connections += 1
        heartbeat = _interval(interval, timings)
        await _until_closed(station.status(), receiver)
        self.connected.set()
        last_call = asyncio.get_running_loop().time()
        while True:
            sent = await self._send_queue(station, receiver)
            if sent:
                last_call = asyncio.get_running_loop().time()
            wait = heartbeat - (asyncio.get_running_loop().time() - last_call)
            if wait <= 0:
                await _until_closed(station.heartbeat(), receiver)
                last_call = asyncio.get_running_loop().time()
                continue
            if self._wake.is_set():
                continue  # queued while the last batch was sent
            # One task to wait on (a wake-up, the receive loop's end or the heartbeat's time).
            waiter = asyncio.get_running_loop().create_task(self._wake.wait())
            try:
                await asyncio.wait(
                    {waiter, receiver}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            if receiver.done():
                raise LinkFailed("the CSMS closed the connection")

    async def _send_queue(self, station: Station, receiver: asyncio.Task[None]) -> int:
        """Send the queue in order, each deleted once answered; how many were sent.

        Returns once a batch was the whole queue and nothing was queued since it was read (the
        wake-up is cleared before each read and set by every commit that queues): no read of
        an empty queue after each event.
        """
        store, sent = self.daemon.store, 0
        while True:
            self._wake.clear()
            batch = store.queued_events(limit=BATCH)
            if not batch:
                return sent
            for event in batch:
                store.sending(event.id)
                try:
                    await _until_closed(
                        station.send_event(event.id, event.type, event.at, event.tech_info),
                        receiver,
                    )
                except (OCPPError, UnknownCallErrorCodeError) as error:
                    if isinstance(error, OCPPError) and error.code == "InternalError":
                        raise  # the CSMS's trouble, not the event's: send it again later
                    # The CSMS read it and refuses it: the same bytes would be refused forever.
                    logger.warning("the CSMS refused event %s: %s", event.id, _describe(error))
                finally:
                    store.sending(None)
                store.acknowledge(event.id)
                sent += 1
            if len(batch) < BATCH and not self._wake.is_set():
                return sent


class Resets:
    """The CSMS's Reset requests: when the charger restarts, and the event saying it did.

    `requested` is set once a reset is due; whoever runs the daemon (service.run_charger) then
    restarts it: the radio, the state file and the OCPP link, as a reboot would. An Immediate
    reset stops charging first (B12); OnIdle while charging waits for the session's end.
    """

    def __init__(self, daemon: ChargerDaemon) -> None:
        self.daemon = daemon
        self.requested = asyncio.Event()
        self._scheduled: str | None = None
        daemon.evse.subscribe(self._evse_changed)

    def _charging(self) -> bool:
        return self.daemon.evse.status.state is not ChargingState.IDLE

    def status(self, reset_type: str) -> ResetStatusEnumType:
        """The answer to a Reset of `reset_type` now."""
        if reset_type == ResetEnumType.on_idle and self._charging():
            return ResetStatusEnumType.scheduled
        return ResetStatusEnumType.accepted

    def request(self, reset_type: str) -> None:
        """Carry out a Reset the CSMS was told was accepted or scheduled."""
        if reset_type == ResetEnumType.on_idle and self._charging():
            self._scheduled = reset_type
            return
        if self._charging():
            self.daemon.evse.apply(ControlCommand(ControlOp.STOP))
        self._now(reset_type)

    def _evse_changed(self, status: ChargerStatus) -> None:
        if self._scheduled is not None and status.state is ChargingState.IDLE:
            self._now(self._scheduled)

    def _now(self, reset_type: str) -> None:
        self._scheduled = None
        if self.requested.is_set():
            return
        daemon = self.daemon
        event = ocpp_events.reset_event(daemon.store.epoch, reset_type)
        daemon.store.queue_security_event(event, daemon.clock.now())
        self.requested.set()


class LinkFailed(Exception):
    """The CSMS answered in a way the link cannot go on with."""


async def _until_closed(awaitable: Any, receiver: asyncio.Task[None]) -> Any:
    """Await `awaitable`, but give up (LinkFailed) as soon as the receive loop ends."""
    task = asyncio.ensure_future(awaitable)
    # Whatever ends first, the call's outcome is collected (never "exception never retrieved").
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    done, _ = await asyncio.wait({task, receiver}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise LinkFailed("the CSMS closed the connection")


def _interval(seconds: float, timings: StationTimings) -> float:
    if not 0 < seconds <= 86_400:
        return timings.default_heartbeat
    return seconds


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:300]
