"""Our charger against an independent CSMS: ocpp-rpc (npm, Node) in strict schema-validation mode.

The real daemon on the virtual radio, its `StationLink` over a real WebSocket on 127.0.0.1 to
tests/interop/node/csms.js, which checks Basic auth itself and validates every message both
ways against its own bundled OCPP 2.0.1 schemas (ajv): every CALL our charger sends, every
result it gives to the CSMS's calls. Any strict-validation failure or malformed frame on the
Node side fails the test (`NodePeer.failures`); on our side, a CSMS message our `ocpp` package
refused would end the link (`link.connections` would grow) or answer a CALLERROR the Node side
reports. Only the clock is fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from ocpp.v201.enums import BootReasonEnumType
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.ocpp_station import StationConfig, StationLink, StationTimings
from chargepin.charger.service import LockoutOverrides
from chargepin.core.csms_auth import basic_authorization, csms_password
from chargepin.core.csms_link import csms_endpoint
from chargepin.core.tickets import Action, verify_receipt
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.errors import ChargerLocked, WrongPin
from tests.helpers.ocpp_rpc import NodePeer, RpcCallFailed
from tests.helpers.pins import wrong_pin

pytestmark = pytest.mark.slow

SERIAL = "CP-INTEROP-1"
OPTIONAL_CLASS = ChargerSpec(
    serial=SERIAL,
    model="Pulsar Plus",  # optional PIN class: the owner may switch the PIN off and on
    firmware="6.8.0",
    pin_enabled=True,
    overrides=LockoutOverrides(failures=2),  # two wrong PINs lock: a short test
)
FAST = StationTimings(
    response_timeout=5.0, open_timeout=5.0, backoff_min=0.05, backoff_max=0.4, ping_interval=None
)


@dataclass
class Rig:
    bed: Testbed
    daemon: ChargerDaemon
    csms: NodePeer
    link: StationLink
    port: int

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The params of each `method` the Node CSMS accepted from our charger (camelCase)."""
        return [e["params"] for e in self.csms.of("call", identity=SERIAL, method=method)]

    async def until_called(self, method: str, count: int = 1) -> list[dict[str, Any]]:
        await self.csms.wait_for(lambda: len(self.calls(method)) >= count, f"{count} {method}")
        return self.calls(method)

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        """SecurityEventNotifications of `event_type` the Node CSMS accepted (waiting for one)."""

        def of_type() -> list[dict[str, Any]]:
            return [p for p in self.calls("SecurityEventNotification") if p["type"] == event_type]

        found: list[dict[str, Any]] = await self.csms.wait_for(of_type, event_type)
        return found

    async def ask(self, method: str, params: dict[str, Any]) -> Any:
        return await self.csms.call(method, params, identity=SERIAL)

    def assert_every_message_valid(self) -> None:
        assert self.csms.failures == [], self.csms.failures
        # Our side refused nothing the Node CSMS sent: no CALLERROR for its valid calls...
        errors = self.csms.of("call_error_seen", outbound=False)
        assert errors == [], errors
        # ...and no result of its ours rejected: the first connection is still the only one.
        assert self.link.connections == 1


@pytest.fixture
async def rig(bed: Testbed) -> AsyncIterator[Rig]:
    daemon = await bed.charger(OPTIONAL_CLASS)
    csms = await NodePeer.start("csms.js")
    try:
        port = (await csms.event("listening"))["port"]
        await csms.command("heartbeat", interval=1)
        await csms.command(
            "password", identity=SERIAL, password=csms_password(daemon.store.secret, SERIAL)
        )
        endpoint = csms_endpoint(f"ws://127.0.0.1:{port}/ocpp/", SERIAL)
        rig = Rig(
            bed, daemon, csms, StationLink(daemon, StationConfig(endpoint, timings=FAST)), port
        )
        rig.link.start()
        try:
            async with asyncio.timeout(15):
                await rig.link.connected.wait()
            yield rig
        finally:
            await rig.link.stop()  # the rig's link of the moment (a test may replace it)
    finally:
        await csms.close()
    assert csms.failures == [], csms.failures


async def test_what_our_charger_sends_passes_ocpp_rpc_strict_validation(rig: Rig) -> None:
    [connected] = rig.csms.of("connected")
    assert (connected["identity"], connected["protocol"]) == (SERIAL, "ocpp2.0.1")
    [boot] = await rig.until_called("BootNotification")
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"]["serialNumber"] == SERIAL
    [status] = await rig.until_called("StatusNotification")
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (
        1,
        1,
        "Available",
    )
    [startup] = await rig.events("StartupOfTheDevice")
    assert startup["customData"]["vendorId"] == "org.chargepin"

    # Real events over the radio: a stranger's wrong PINs, then the lockout they cause.
    stranger = await rig.bed.phone("stranger")
    for _ in range(2):
        with contextlib.suppress(WrongPin, ChargerLocked):
            await stranger.connect(SERIAL, pin=wrong_pin(rig.daemon.store.current_pin()))
    failed = await rig.events("MaintenanceLoginFailed")
    assert json.loads(failed[0]["techInfo"])["reason"] == "wrong_pin"
    [lockout] = await rig.events("org.chargepin.PinLockout")
    assert json.loads(lockout["techInfo"])["origin"] == "ble"
    await rig.csms.wait_for(lambda: rig.daemon.store.queue_length() == 0, "the queue sent")
    # Nothing was sent for the interval the CSMS gave (1 s): a Heartbeat.
    await rig.until_called("Heartbeat")
    rig.assert_every_message_valid()


async def test_the_node_csms_checks_basic_auth_and_rotates_the_password(rig: Rig) -> None:
    result = await rig.ask(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": "rotated-by-ocpp-rpc-0001",
                }
            ]
        },
    )
    assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
    # The CSMS drops the link before it knows the new password: the charger's reconnection
    # with it is refused by ocpp-rpc's own check...
    assert rig.csms.of("refused") == []
    await rig.csms.command("drop", identity=SERIAL)
    await rig.csms.event("refused", "the rotated password refused", identity=SERIAL)
    assert rig.link.connections == 1
    # ...until the CSMS takes it: the next attempt (back-off) boots again.
    await rig.csms.command("password", identity=SERIAL, password="rotated-by-ocpp-rpc-0001")
    await rig.until_called("BootNotification", 2)
    await rig.csms.wait_for(lambda: rig.link.connections == 2, "the second connection")
    assert rig.csms.failures == []


def variable(component: str, name: str) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}}


async def test_our_answers_to_its_calls_pass_its_strict_validation(rig: Rig) -> None:
    store = rig.daemon.store
    # GetVariables: values, a WriteOnly secret Rejected, unknown names, an attribute type and
    # an EVSE we do not have.
    got = await rig.ask(
        "GetVariables",
        {
            "getVariableData": [
                variable("BluetoothPin", "Enabled"),
                variable("BluetoothPin", "PinClass"),
                variable("BluetoothPin", "Epoch"),
                variable("BluetoothPin", "LockedUntil"),
                variable("BluetoothPin", "BondedPhones"),
                variable("BluetoothPin", "Pin"),
                variable("SecurityCtrlr", "BasicAuthPassword"),
                variable("SecurityCtrlr", "SecurityProfile"),
                variable("BluetoothPin", "Colour"),
                variable("Teapot", "Enabled"),
                {**variable("BluetoothPin", "Epoch"), "attributeType": "Target"},
                {
                    "component": {"name": "BluetoothPin", "evse": {"id": 1}},
                    "variable": {"name": "Epoch"},
                },
            ]
        },
    )
    answers = [(r["attributeStatus"], r.get("attributeValue")) for r in got["getVariableResult"]]
    assert answers == [
        ("Accepted", "true"),
        ("Accepted", "optional"),
        ("Accepted", str(store.epoch)),
        ("Accepted", None),
        ("Accepted", ""),
        ("Rejected", None),
        ("Rejected", None),
        ("Accepted", "1"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
        ("NotSupportedAttributeType", None),
        ("UnknownComponent", None),
    ]

    # SetVariables: the PIN off and on again (optional class), a read-only one refused.
    def set_data(component: str, name: str, value: str) -> dict[str, Any]:
        return {**variable(component, name), "attributeValue": value}

    result = await rig.ask(
        "SetVariables",
        {
            "setVariableData": [
                set_data("BluetoothPin", "Enabled", "false"),
                set_data("BluetoothPin", "Epoch", "9"),
                set_data("SecurityCtrlr", "BasicAuthPassword", "short"),
                {**set_data("BluetoothPin", "Enabled", "true"), "attributeType": "MaxSet"},
            ]
        },
    )
    off, read_only, short, max_set = result["setVariableResult"]
    assert (short["attributeStatus"], short["attributeStatusInfo"]["reasonCode"]) == (
        "Rejected",
        "InvalidValue",
    )
    assert max_set["attributeStatus"] == "NotSupportedAttributeType"
    assert off["attributeStatus"] == "Accepted" and not store.pin_enabled
    assert read_only["attributeStatus"] == "Rejected"
    assert read_only["attributeStatusInfo"]["reasonCode"] == "ReadOnly"
    result = await rig.ask(
        "SetVariables", {"setVariableData": [set_data("BluetoothPin", "Enabled", "true")]}
    )
    assert result["setVariableResult"][0]["attributeStatus"] == "Accepted" and store.pin_enabled

    def changes() -> list[str]:
        events = rig.calls("SecurityEventNotification")
        return [
            json.loads(p["techInfo"])["change"]
            for p in events
            if p["type"] == "ReconfigurationOfSecurityParameters"
        ]

    await rig.csms.wait_for(lambda: len(changes()) >= 2, "the two reconfiguration events")
    assert changes() == ["pin_disabled", "pin_enabled"]

    # GetBaseReport, and the NotifyReport it makes us send.
    for request_id, base in ((7, "FullInventory"), (8, "ConfigurationInventory")):
        answer = await rig.ask("GetBaseReport", {"requestId": request_id, "reportBase": base})
        assert answer == {"status": "Accepted"}
    reports = await rig.until_called("NotifyReport", 2)
    # Each report is sent from a task of its own: they may arrive in either order.
    by_request = {r["requestId"]: r for r in reports}
    assert sorted(by_request) == [7, 8] and not any(r["tbc"] for r in reports)
    names = {d["variable"]["name"] for d in by_request[7]["reportData"]}
    assert {"Enabled", "Pin", "BasicAuthPassword", "LockedUntil"} <= names
    summary = await rig.ask("GetBaseReport", {"requestId": 9, "reportBase": "SummaryInventory"})
    assert summary == {"status": "NotSupported"}

    # DataTransfer: a challenge, then a real sealed owner ticket for it; its receipt verifies.
    challenge = await rig.ask(
        "DataTransfer", {"vendorId": "org.chargepin", "messageId": "challenge"}
    )
    assert challenge["status"] == "Accepted"
    ticket = rig.bed.authority(rig.daemon).ticket(bytes.fromhex(challenge["data"]), Action.REKEY)
    applied = await rig.ask(
        "DataTransfer", {"vendorId": "org.chargepin", "messageId": "ticket", "data": ticket.hex()}
    )
    assert applied["status"] == "Accepted", applied
    receipt = verify_receipt(store.secret, SERIAL, bytes.fromhex(applied["data"]["receipt"]))
    assert receipt.action is Action.REKEY and receipt.generation == store.generation == 1
    replay = await rig.ask(
        "DataTransfer", {"vendorId": "org.chargepin", "messageId": "ticket", "data": ticket.hex()}
    )
    assert (replay["status"], replay["data"]["reason"]) == ("Rejected", "challenge")
    await rig.events("AttemptedReplayAttacks")
    for params, status in (
        ({"vendorId": "org.chargepin", "messageId": "open-sesame"}, "UnknownMessageId"),
        ({"vendorId": "com.example", "messageId": "challenge"}, "UnknownVendorId"),
        ({"vendorId": "org.chargepin", "messageId": "ticket", "data": "zz"}, "Rejected"),
    ):
        assert (await rig.ask("DataTransfer", params))["status"] == status

    # An OCPP 2.0.1 action the charger does not support, and one OCPP does not have:
    # OCPP-J's NotSupported and NotImplemented (core.call_errors).
    with pytest.raises(RpcCallFailed) as trigger:
        await rig.ask("TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert trigger.value.code == "NotSupported"
    unknown = await rig.csms.raw("OpenTheGarageDoor", {}, identity=SERIAL)
    assert unknown[:3] == [4, unknown[1], "NotImplemented"], unknown
    rig.assert_every_message_valid()


async def test_the_node_csms_does_validate(rig: Rig) -> None:
    """The oracle is on: a schema-invalid BootNotification from another station (sent raw over
    a plain WebSocket) is refused by ocpp-rpc and reported, so a failure would be seen."""
    other = "CP-INTEROP-2"
    await rig.csms.command("password", identity=other, password="another-password-0001")
    async with connect(
        f"ws://127.0.0.1:{rig.port}/ocpp/{other}",
        subprotocols=[Subprotocol("ocpp2.0.1")],
        additional_headers={"Authorization": basic_authorization(other, "another-password-0001")},
        open_timeout=10,
    ) as websocket:
        await websocket.send(json.dumps([2, "b1", "BootNotification", {"reason": "PowerUp"}]))
        answer = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    assert answer[:3] == [4, "b1", "OccurenceConstraintViolation"], answer
    [failure] = rig.csms.failures
    assert (failure["event"], failure["identity"], failure["method"]) == (
        "validation_failure",
        other,
        "BootNotification",
    )
    rig.csms.events.remove(failure)  # expected here: the fixture checks the rest


async def test_a_reset_from_its_csms(rig: Rig) -> None:
    """Reset (B11, B12): one EVSE Rejected with its reason, the whole charger Accepted; the
    ResetOrReboot event and the next life's RemoteReset boot pass its validation."""
    one_evse = await rig.ask("Reset", {"type": "Immediate", "evseId": 1})
    assert one_evse["status"] == "Rejected"
    assert one_evse["statusInfo"]["reasonCode"] == "EvseResetUnsupported"
    assert not rig.link.resets.requested.is_set()
    assert await rig.ask("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    async with asyncio.timeout(10):
        await rig.link.resets.requested.wait()
    [reset] = await rig.events("ResetOrReboot")
    assert json.loads(reset["techInfo"])["reset"] == "Immediate"
    # What `chargepin charger run` does next (service.run_charger): the link again, RemoteReset.
    await rig.link.stop()
    endpoint = csms_endpoint(f"ws://127.0.0.1:{rig.port}/ocpp/", SERIAL)
    config = StationConfig(endpoint, timings=FAST, boot_reason=BootReasonEnumType.remote_reset)
    rig.link = StationLink(rig.daemon, config)
    rig.link.start()
    boots = await rig.until_called("BootNotification", 2)
    assert boots[1]["reason"] == "RemoteReset"
    await rig.events("StartupOfTheDevice")
    assert rig.csms.failures == [], rig.csms.failures
    assert rig.csms.of("call_error_seen", outbound=False) == []
