"""A simulated charging station for the CSMS tests: the `ocpp` package's v201 ChargePoint over
`websockets`, answering owner actions the way the charger does (docs/OCPP.md).

It knows the charger's factory secret (from the factory bundle), so it opens the fleet's
tickets and signs receipts with core.tickets, exactly the bytes a charger would; what it does
not do is Bluetooth (the charger side's own tests cover that).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action, DataTransferStatusEnumType
from websockets.asyncio.client import ClientConnection, connect

from chargepin.core import pin_state
from chargepin.core.applied_ops import AppliedOps, Decision, decide
from chargepin.core.csms_auth import csms_password
from chargepin.core.epochs import pin_fingerprint
from chargepin.core.errors import TicketRejected
from chargepin.core.ocpp_events import custom_data
from chargepin.core.pin_state import PinState
from chargepin.core.policy import OP_FIRMWARE
from chargepin.core.tickets import OP, Receipt, Ticket, open_ticket, sign_receipt
from chargepin.core.tickets import Action as TicketAction

SUBPROTOCOL = "ocpp2.0.1"
OP_FIRMWARE_TEXT = str(OP_FIRMWARE)


def basic(serial: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{serial}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ws_url(base_url: str, serial: str) -> str:
    return base_url.replace("http://", "ws://", 1) + f"/ocpp/{serial}"


@dataclass
class StationState:
    """What the simulated charger holds: its PIN state (core.pin_state) and what it applied."""

    pin: PinState = field(default_factory=lambda: PinState(enabled=True, epoch=0))
    applied: list[Ticket] = field(default_factory=list)
    """Every ticket applied, in order; a repeat of an applied op is not (`repeats`)."""
    ops: AppliedOps = field(default_factory=AppliedOps)
    """The ops applied (core.applied_ops), as the charger's state file keeps them."""
    repeats: list[Ticket] = field(default_factory=list)
    """Tickets answered without applying them: their op was applied before."""
    drop_before_answering_ticket: bool = False
    """Apply the next ticket, then lose the connection before the answer leaves (once)."""
    refuse_with: tuple[str, str] | None = None
    password: str | None = None
    """The Basic auth password a SetVariables set (None: the derived one)."""
    drop_before_answering_password: bool = False
    """Take the new password, then lose the connection before the answer leaves."""


@dataclass
class OwnerDesk:
    """How the charger answers the CSMS's DataTransfer owner actions (docs/OCPP.md), without
    Bluetooth: the connection's challenge, the ticket opened and applied with core, a signed
    receipt. Shared by SimStation and the ocpp-rpc station of tests/interop."""

    serial: str
    secret: bytes
    now: Callable[[], float]
    state: StationState
    challenge: bytes | None = None
    ticket_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def data_transfer(self, vendor_id: str, message_id: str | None, data: Any) -> tuple[str, Any]:
        """The answer's status and data."""
        if vendor_id != "org.chargepin":
            return DataTransferStatusEnumType.unknown_vendor_id, None
        if message_id == "challenge":
            self.challenge = secrets.token_bytes(16)
            return DataTransferStatusEnumType.accepted, self.challenge.hex()
        if message_id != "ticket":
            return DataTransferStatusEnumType.unknown_message_id, None
        challenge, self.challenge = self.challenge, None
        try:
            ticket = open_ticket(
                self.secret, self.serial, bytes.fromhex(str(data)), self.now(), challenge
            )
        except (TicketRejected, ValueError) as error:
            reason = getattr(error, "reason", "malformed")
            return self._refused(reason, str(error))
        finally:
            self.ticket_arrived.set()
        if self.state.refuse_with is not None:
            return self._refused(*self.state.refuse_with)
        op = ticket.arg(OP)
        # The charger's rules, as owner_actions applies them: an op applied before is answered
        # with the current state and not applied again (core.applied_ops), else
        # core.pin_state.apply, the op remembered with the change.
        removed = 0
        if decide(self.state.ops, op) is Decision.ANSWER:
            self.state.repeats.append(ticket)
        else:
            self.state.applied.append(ticket)
            self.state.pin = pin_state.apply(ticket.action, dict(ticket.args), self.state.pin)
            self.state.ops = self.state.ops.after(op)
            removed = 1 if ticket.action is TicketAction.REMOVE_PHONE else 0
        now_state = self.state.pin
        receipt = Receipt(
            self.serial,
            ticket.challenge,
            ticket.action,
            now_state.epoch,
            now_state.enabled,
            pin_fingerprint(self.secret, self.serial, now_state.live_pin(self.secret, self.serial)),
            bonds_removed=removed,
            generation=now_state.generation,
        )
        return DataTransferStatusEnumType.accepted, {
            "ok": True,
            "action": ticket.action.value,
            "receipt": sign_receipt(self.secret, receipt).hex(),
            "phones": [],
        }

    @staticmethod
    def _refused(reason: str, detail: str) -> tuple[str, Any]:
        return DataTransferStatusEnumType.rejected, {
            "ok": False,
            "reason": reason,
            "detail": detail,
        }


class SimStation(ChargePoint):  # type: ignore[misc]
    def __init__(
        self,
        serial: str,
        connection: ClientConnection,
        secret: bytes,
        now: Callable[[], float],
        state: StationState | None = None,
    ) -> None:
        super().__init__(serial, connection, response_timeout=10)
        self.serial = serial
        self.secret = secret
        self.now = now
        self.state = state or StationState()
        self.desk = OwnerDesk(serial, secret, now, self.state)
        self.ticket_arrived = self.desk.ticket_arrived

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> call_result.DataTransfer:
        status, answer = self.desk.data_transfer(vendor_id, message_id, data)
        if message_id == "ticket" and self.state.drop_before_answering_ticket:
            self.state.drop_before_answering_ticket = False
            await self._connection.close()
        return call_result.DataTransfer(status=status, data=answer)

    @on(Action.set_variables)
    async def on_set_variables(
        self, set_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.SetVariables:
        results = []
        for item in set_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            status = "UnknownVariable"
            if (component, variable) == ("SecurityCtrlr", "BasicAuthPassword"):
                self.state.password = item["attribute_value"]
                status = "Accepted"
            results.append(
                {
                    "attribute_status": status,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        if self.state.drop_before_answering_password:
            await self._connection.close()
        return call_result.SetVariables(set_variable_result=results)

    async def boot(self, firmware: str = OP_FIRMWARE_TEXT, serial_number: str | None = None) -> Any:
        """BootNotification; by default as a charger of today, whose firmware knows `op` (the
        fleet then seals each command's op in its tickets and OwnerDesk applies it once)."""
        station: dict[str, str] = {"model": "Pulsar Max", "vendor_name": "chargepin"}
        station["firmware_version"] = firmware
        station["serial_number"] = serial_number or self.serial
        return await self.call(
            call.BootNotification(charging_station=station, reason="PowerUp"), suppress=False
        )

    async def security_event(
        self, event_type: str, tech_info: str | None, queue_id: int, at: dt.datetime
    ) -> Any:
        return await self.call(
            call.SecurityEventNotification(
                type=event_type,
                timestamp=at.isoformat(),
                tech_info=tech_info,
                custom_data=custom_data(self.serial, queue_id),
            ),
            suppress=False,
        )


@contextlib.asynccontextmanager
async def station(
    base_url: str,
    serial: str,
    secret: bytes,
    now: Callable[[], float],
    state: StationState | None = None,
    password: str | None = None,
) -> AsyncIterator[SimStation]:
    """A connected station running its receive loop until the block ends."""
    async with connect(
        ws_url(base_url, serial),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers=basic(serial, password or csms_password(secret, serial)),
        open_timeout=10,
    ) as connection:
        sim = SimStation(serial, connection, secret, now, state)
        task = asyncio.create_task(sim.start())
        try:
            yield sim
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
