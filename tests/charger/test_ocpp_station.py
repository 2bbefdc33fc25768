"""The charger as an OCPP 2.0.1 Charging Station, against a CSMS made with the `ocpp` package.

The real daemon on the virtual radio, its `StationLink` over a real WebSocket on 127.0.0.1 to
tests/helpers/ocpp_csms.py (the `ocpp` package's own ChargePoint as the CSMS, its schema
validation on). Only the clock is fake.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ocpp import messages as ocpp_messages
from ocpp.exceptions import OCPPError
from ocpp.v201 import call
from websockets.asyncio.server import ServerConnection

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.ocpp_station import StationConfig, StationLink, StationTimings
from chargepin.clock import FakeClock
from chargepin.core.csms_auth import csms_password
from chargepin.core.csms_link import csms_endpoint
from chargepin.core.events import EventKind
from chargepin.core.ocpp_events import EventFacts
from chargepin.core.protocol import ChargingState, ControlCommand, ControlOp
from chargepin.core.tickets import Action, Receipt, new_op, verify_receipt
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.errors import WrongPin
from tests.helpers.ocpp_csms import TestCsms, data_transfer
from tests.helpers.pins import wrong_pin
from tests.helpers.tls import private_ca

SERIAL = "CP-OCPP-1"
FAST = StationTimings(
    response_timeout=2.0, open_timeout=2.0, backoff_min=0.05, backoff_max=0.4, ping_interval=None
)


@dataclass
class Rig:
    bed: Testbed
    daemon: ChargerDaemon
    csms: TestCsms
    link: StationLink

    @property
    def received(self) -> Any:
        return self.csms.of(SERIAL)

    async def events_of(self, event_type: str, count: int = 1) -> list[dict[str, Any]]:
        def arrived() -> bool:
            return len([e for e in self.received.events if e["type"] == event_type]) >= count

        await self.csms.wait_for(arrived)
        return [e for e in self.received.events if e["type"] == event_type]


def start_link(
    daemon: ChargerDaemon, csms: TestCsms, timings: StationTimings = FAST
) -> StationLink:
    endpoint = csms_endpoint(csms.url(), daemon.store.identity.serial)
    link = StationLink(daemon, StationConfig(endpoint, timings=timings))
    link.start()
    return link


@pytest.fixture
async def rig(bed: Testbed) -> AsyncIterator[Rig]:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)})
    await csms.start()
    link = start_link(daemon, csms)
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        yield Rig(bed, daemon, csms, link)
    finally:
        await link.stop()
        await csms.stop()


async def test_boot_status_and_startup_on_connect(rig: Rig) -> None:
    [boot] = rig.received.boots
    identity = rig.daemon.store.identity
    assert boot == {
        "reason": "PowerUp",
        "model": identity.model,
        "vendor_name": "chargepin",
        "firmware_version": str(identity.firmware),
        "serial_number": SERIAL,
    }
    [status] = rig.received.statuses
    assert (status["evse_id"], status["connector_id"], status["connector_status"]) == (
        1,
        1,
        "Available",
    )
    [startup] = await rig.events_of("StartupOfTheDevice")
    # The `ocpp` package hands its handlers snake_case keys, customData's own included.
    assert startup["custom_data"]["vendor_id"] == "org.chargepin"
    assert startup["custom_data"]["event_id"].startswith(f"{SERIAL}:")
    await rig.csms.wait_for(lambda: rig.daemon.store.queue_length() == 0)


async def test_a_wrong_pin_over_bluetooth_arrives_as_maintenance_login_failed(
    rig: Rig, clock: FakeClock
) -> None:
    attacker = await rig.bed.phone("attacker")
    epoch = rig.daemon.store.epoch
    with pytest.raises(WrongPin):
        await attacker.connect(SERIAL, pin=wrong_pin(rig.daemon.store.current_pin()))
    [failed] = await rig.events_of("MaintenanceLoginFailed")
    info = json.loads(failed["tech_info"])
    assert info["origin"] == "ble"
    assert info["epoch"] == epoch
    assert info["reason"] == "wrong_pin"
    assert info["phone"]
    assert len(failed["tech_info"]) <= 255


async def test_an_event_queued_while_another_is_answered_goes_out_at_once(rig: Rig) -> None:
    """The link reads the queue once per batch, not after each event: an event recorded while
    the last one waits for its answer must wake it all the same (the heartbeat is 300 s)."""
    store = rig.daemon.store
    await rig.csms.wait_for(lambda: store.queue_length() == 0)

    def second(payload: dict[str, Any]) -> None:
        if json.loads(payload["tech_info"]).get("phone") == "F1:22:33:44:55:01":
            store.record_event(EventKind.PIN_CHANGED, "owner ticket", 1001.0)

    rig.csms.on_event = second
    facts = EventFacts(phone="F1:22:33:44:55:01", reason="wrong_pin")
    store.record_event(EventKind.PAIRING_FAILED, "F1:22:33:44:55:01 wrong_pin", 1000.0, facts)
    await rig.events_of("ReconfigurationOfSecurityParameters")
    await rig.csms.wait_for(lambda: store.queue_length() == 0, timeout=5)


def test_the_charger_validates_ocpp_messages_inline() -> None:
    """Not in asyncio's thread pool, the package's default: 0.2 ms of CPU per event
    (docs/PERFORMANCE.md, "A security event on the charger")."""
    assert ocpp_messages.ASYNC_VALIDATION is False


async def test_heartbeats_follow_the_csms_interval(bed: Testbed) -> None:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)})
    csms.heartbeat = 1
    await csms.start()
    link = start_link(daemon, csms)
    try:
        await csms.wait_for(lambda: csms.of(SERIAL).heartbeats >= 2, timeout=6)
    finally:
        await link.stop()
        await csms.stop()


async def test_events_queued_while_the_csms_is_down_arrive_in_order_once(bed: Testbed) -> None:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)})  # not started yet
    link = start_link(daemon, csms)
    try:
        store = daemon.store
        kinds = [EventKind.PIN_DISABLED, EventKind.PIN_ENABLED, EventKind.PIN_CHANGED]
        for index in range(30):
            store.record_event(kinds[index % 3], f"owner ticket {index}", 1000.0 + index)
        # A few connection attempts fail while the CSMS is down; nothing leaves the queue.
        await asyncio.wait_for(_until(lambda: link.attempts >= 3), 10)
        assert store.queue_length() == 31  # the startup event and the 30
        await csms.start()
        await csms.wait_for(lambda: store.queue_length() == 0, timeout=15)
        events = csms.of(SERIAL).unique_events()
        assert events[0]["type"] == "StartupOfTheDevice"
        changes = [json.loads(e["tech_info"])["change"] for e in events[1:]]
        assert changes == [kinds[index % 3].value for index in range(30)]
        ids = [int(e["custom_data"]["event_id"].split(":")[1]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 31
    finally:
        await link.stop()
        await csms.stop()


async def test_a_rotated_password_is_kept_and_used_next_time(rig: Rig) -> None:
    await rig.daemon.store_set_password_for_test() if False else None
    rig.daemon.store.set_csms_password("rotated-by-the-csms-0001")
    rig.csms.passwords[SERIAL] = "rotated-by-the-csms-0001"
    boots = len(rig.received.boots)
    await rig.csms.stop()
    await rig.csms.start()
    await rig.csms.wait_for(lambda: len(rig.received.boots) > boots, timeout=10)


async def test_a_wrong_password_is_refused_and_bluetooth_goes_on(bed: Testbed) -> None:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: "not-the-chargers-password"})
    await csms.start()
    link = start_link(daemon, csms)
    try:
        await csms.wait_for(lambda: len(csms.refused) >= 3, timeout=10)
        assert csms.of(SERIAL).boots == []
        phone = await bed.phone("owner")
        await phone.connect(SERIAL, pin=str(daemon.store.current_pin()))
        assert daemon.store.counters()[EventKind.PAIRING_OK] == 1
    finally:
        await link.stop()
        await csms.stop()


# ----------------------------------------------------------------------- owner actions


async def challenge(rig: Rig) -> bytes:
    response = await rig.csms.ask(SERIAL, data_transfer("challenge"))
    assert response.status == "Accepted"
    value = bytes.fromhex(response.data)
    assert len(value) == 16
    return value


async def test_a_ticket_over_data_transfer_applies_and_returns_a_verifiable_receipt(
    rig: Rig,
) -> None:
    authority = rig.bed.authority(rig.daemon)
    epoch = rig.daemon.store.epoch
    ticket = authority.ticket(await challenge(rig), Action.CHANGE_PIN, {"next_epoch": "1"})
    response = await rig.csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
    assert response.status == "Accepted", response.data
    assert response.data["ok"] is True and response.data["action"] == "change_pin"
    receipt = verify_receipt(
        rig.daemon.store.secret, SERIAL, bytes.fromhex(response.data["receipt"])
    )
    assert receipt.action is Action.CHANGE_PIN and receipt.epoch == epoch + 1
    assert rig.daemon.store.epoch == epoch + 1
    [change] = await rig.events_of("ReconfigurationOfSecurityParameters")
    assert json.loads(change["tech_info"])["origin"] == "ocpp"

    # The same ticket again: its challenge is spent. Refused, and reported as a replay.
    replay = await rig.csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
    assert replay.status == "Rejected"
    assert replay.data["ok"] is False and replay.data["reason"] == "challenge"
    [attack] = await rig.events_of("AttemptedReplayAttacks")
    assert json.loads(attack["tech_info"])["reason"] == "challenge"
    assert rig.daemon.store.epoch == epoch + 1


async def test_a_challenge_is_bound_to_its_connection(rig: Rig) -> None:
    authority = rig.bed.authority(rig.daemon)
    ticket = authority.ticket(await challenge(rig), Action.LIST_PHONES)
    # The connection drops and comes back: the challenge it had is gone with it.
    connections = rig.link.connections
    await rig.csms.stop()
    await rig.csms.start()
    await rig.csms.wait_for(lambda: rig.link.connections > connections and SERIAL in rig.csms.peers)
    response = await rig.csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
    assert response.data["reason"] == "challenge"


async def test_removing_a_phone_over_ocpp_forgets_the_bond_and_drops_its_link(rig: Rig) -> None:
    phone = await rig.bed.phone("member")
    link = await phone.connect(SERIAL, pin=str(rig.daemon.store.current_pin()))
    address = str(link.connection.self_address)
    authority = rig.bed.authority(rig.daemon)
    ticket = authority.ticket(await challenge(rig), Action.REMOVE_PHONE, {"address": address})
    response = await rig.csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
    assert response.status == "Accepted", response.data
    assert [p.split("/")[0] for p in response.data["phones"]] == [address.split("/")[0]]
    assert await rig.daemon.store.keystore.get_all() == []
    for _ in range(100):
        if not rig.daemon.device.connections:
            break
        await asyncio.sleep(0.02)
    assert not rig.daemon.device.connections
    [removed] = await rig.events_of("org.chargepin.PhoneRemoved")
    assert json.loads(removed["tech_info"])["phone"] == address.split("/")[0]


async def test_a_command_sent_twice_is_applied_once_even_across_a_restart(bed: Testbed) -> None:
    """The fleet repeats a command whose answer it lost: a new ticket, for a new challenge, with
    the same op (core/applied_ops.py). The charger answers it with a fresh receipt of its state
    and applies nothing; its record survives a reboot."""
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    secret, authority = daemon.store.secret, bed.authority(daemon)
    csms = TestCsms({SERIAL: csms_password(secret, SERIAL)})
    await csms.start()
    generation, op = daemon.store.generation, new_op()

    async def rekey(command_op: str) -> Receipt:
        response = await csms.ask(SERIAL, data_transfer("challenge"))
        fresh = bytes.fromhex(response.data)
        ticket = authority.ticket(fresh, Action.REKEY, {"op": command_op})
        answer = await csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
        assert answer.status == "Accepted", answer.data
        receipt = verify_receipt(secret, SERIAL, bytes.fromhex(answer.data["receipt"]))
        assert receipt.challenge == fresh and receipt.action is Action.REKEY
        # The same bytes again: a replay, refused whatever op it carries.
        replay = await csms.ask(SERIAL, data_transfer("ticket", ticket.hex()))
        assert replay.data["reason"] == "challenge"
        return receipt

    link = start_link(daemon, csms)
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        assert (await rekey(op)).generation == generation + 1
        assert (await rekey(op)).generation == generation + 1  # answered, not applied
        assert daemon.store.generation == generation + 1
        assert daemon.store.counters()[EventKind.PIN_REKEYED] == 1
        assert op in daemon.store.applied_ops
        # A reboot between the two: the record is in the state file, with the change it records.
        await link.stop()
        connections = len(csms.of(SERIAL).boots)
        daemon = await bed.restart(daemon)
        link = start_link(daemon, csms)
        await csms.wait_for(lambda: len(csms.of(SERIAL).boots) > connections, timeout=10)
        assert (await rekey(op)).generation == generation + 1
        assert daemon.store.generation == generation + 1
        assert daemon.store.counters()[EventKind.PIN_REKEYED] == 1
        # Another command is applied as ever.
        assert (await rekey(new_op())).generation == generation + 2
    finally:
        await link.stop()
        await csms.stop()


async def test_a_phone_removed_twice_by_one_command_is_removed_once(rig: Rig) -> None:
    phone = await rig.bed.phone("member")
    link = await phone.connect(SERIAL, pin=str(rig.daemon.store.current_pin()))
    address = str(link.connection.self_address).split("/")[0]
    authority = rig.bed.authority(rig.daemon)
    args = {"address": address, "op": new_op()}
    answers = []
    for _ in range(2):
        ticket = authority.ticket(await challenge(rig), Action.REMOVE_PHONE, args)
        answers.append(await rig.csms.ask(SERIAL, data_transfer("ticket", ticket.hex())))
    first, second = answers
    assert first.data["ok"] is True and len(first.data["phones"]) == 1
    # Before exactly once, the second was refused ("no paired phone") and its command failed.
    assert second.status == "Accepted" and second.data["ok"] is True, second.data
    assert second.data["phones"] == []
    receipt = verify_receipt(rig.daemon.store.secret, SERIAL, bytes.fromhex(second.data["receipt"]))
    assert receipt.bonds_removed == 0  # nothing removed this time
    assert rig.daemon.store.counters()[EventKind.BOND_REMOVED] == 1


@pytest.mark.parametrize(
    "data",
    ["zz", "", "00" * 10_000, 12, {"ticket": "00"}, ["00"], None, "0" * 3],
)
async def test_malformed_ticket_data_is_rejected_and_reported(rig: Rig, data: Any) -> None:
    response = await rig.csms.ask(SERIAL, data_transfer("ticket", data))
    assert response.status == "Rejected"
    assert response.data["ok"] is False and response.data["reason"] == "malformed"
    await rig.events_of("InvalidMessages")
    # The link still works.
    assert (await rig.csms.ask(SERIAL, data_transfer("challenge"))).status == "Accepted"


async def test_unknown_vendor_and_message_ids(rig: Rig) -> None:
    unknown_message = await rig.csms.ask(SERIAL, data_transfer("open-sesame"))
    assert unknown_message.status == "UnknownMessageId"
    unknown_vendor = await rig.csms.ask(SERIAL, data_transfer("challenge", vendor="com.other"))
    assert unknown_vendor.status == "UnknownVendorId"


async def test_schema_invalid_calls_get_a_call_error_and_the_link_goes_on(rig: Rig) -> None:
    with pytest.raises(OCPPError) as error:
        await rig.csms.peers[SERIAL].call(
            call.DataTransfer(vendor_id="x" * 300), suppress=False, skip_schema_validation=True
        )
    assert error.value.code in ("FormatViolation", "TypeConstraintViolation")
    assert (await rig.csms.ask(SERIAL, data_transfer("challenge"))).status == "Accepted"


# --------------------------------------------------------------------------- attacks


async def hostile(bed: Testbed, behave: Any) -> tuple[ChargerDaemon, TestCsms, StationLink]:
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)})
    csms.on_connect = behave
    await csms.start()
    return daemon, csms, start_link(daemon, csms)


async def still_serves_bluetooth(bed: Testbed, daemon: ChargerDaemon) -> None:
    phone = await bed.phone("owner")
    await phone.connect(SERIAL, pin=str(daemon.store.current_pin()))


async def test_a_csms_that_never_answers(bed: Testbed) -> None:
    calls: list[str] = []

    async def silent(connection: ServerConnection) -> None:
        async for frame in connection:
            calls.append(str(frame))

    daemon, csms, link = await hostile(bed, silent)
    try:
        # Each boot times out (response_timeout), the link reconnects and boots again.
        await csms.wait_for(lambda: False, timeout=0.01) if False else None
        for _ in range(100):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(calls) >= 2 and all('"BootNotification"' in c for c in calls)
        await still_serves_bluetooth(bed, daemon)
        assert daemon.store.queue_length() >= 1  # nothing was answered: nothing deleted
    finally:
        await link.stop()
        await csms.stop()


async def test_a_csms_that_answers_garbage_floods_and_sends_huge_frames(bed: Testbed) -> None:
    rounds: list[int] = []
    survived: list[int] = []

    async def garbage(connection: ServerConnection) -> None:
        rounds.append(len(rounds))
        frame = json.loads(await connection.recv())
        if len(rounds) == 1:  # the first boot is answered with an error code OCPP does not have
            await connection.send(json.dumps([4, frame[1], "Garbage", "x", {}]))
            await connection.wait_closed()
            return
        boot = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}
        await connection.send(json.dumps([3, frame[1], boot]))
        junk = [
            "not json",
            b"\x00\xff binary",
            "[]",
            "[9]",
            '[2, "x"]',
            '[2, "id-1", "GetVariables", 5]',
            '[2, "id-2", "Reset", {"type": "Immediate"}]',
            '[3, "nobody-asked", {}]',
            '[4, "nobody-asked", "Garbage", "x", {}]',
            "[" * 10_000 + "]" * 10_000,
        ]
        for item in junk:
            await connection.send(item)
        for index in range(300):  # a flood of calls
            await connection.send(json.dumps([2, f"f{index}", "DataTransfer", {"vendorId": "x"}]))
        # Still the same connection: the station answers a real call after all that.
        await connection.send(json.dumps([2, "after", "DataTransfer", {"vendorId": "x"}]))
        async for answer in connection:
            if '"after"' in str(answer):
                survived.append(len(rounds))
                break
        await connection.send("x" * 200_000)  # larger than the station takes
        async for _ in connection:
            pass

    daemon, csms, link = await hostile(bed, garbage)
    try:
        for _ in range(600):  # a loaded machine validates the flood's 300 calls slowly
            if len(rounds) >= 3:
                break
            await asyncio.sleep(0.05)
        assert survived  # the garbage and the flood did not end the connection
        assert len(rounds) >= 3  # the boot's garbage answer and the oversized frame did
        await still_serves_bluetooth(bed, daemon)
    finally:
        await link.stop()
        await csms.stop()


# ----------------------------------------------------------------------- device model


def variable(component: str, name: str) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}}


async def get(rig: Rig, *names: tuple[str, str]) -> list[dict[str, Any]]:
    response = await rig.csms.ask(
        SERIAL, call.GetVariables(get_variable_data=[variable(c, n) for c, n in names])
    )
    return list(response.get_variable_result)


async def set_(rig: Rig, component: str, name: str, value: str) -> dict[str, Any]:
    response = await rig.csms.ask(
        SERIAL,
        call.SetVariables(
            set_variable_data=[{**variable(component, name), "attribute_value": value}]
        ),
    )
    [result] = response.set_variable_result
    return dict(result)


async def test_get_variables_reads_the_state_and_never_a_secret(rig: Rig) -> None:
    results = await get(
        rig,
        ("BluetoothPin", "Enabled"),
        ("BluetoothPin", "Mandatory"),
        ("BluetoothPin", "PinClass"),
        ("BluetoothPin", "Epoch"),
        ("BluetoothPin", "FailedAttempts"),
        ("BluetoothPin", "LockedUntil"),
        ("BluetoothPin", "Pin"),
        ("SecurityCtrlr", "BasicAuthPassword"),
        ("SecurityCtrlr", "Identity"),
        ("SecurityCtrlr", "SecurityProfile"),
        ("BluetoothPin", "Colour"),
        ("Teapot", "Enabled"),
    )
    answers = [(r["attribute_status"], r.get("attribute_value")) for r in results]
    assert answers == [
        ("Accepted", "true"),
        ("Accepted", "true"),
        ("Accepted", "mandatory"),
        ("Accepted", str(rig.daemon.store.epoch)),
        ("Accepted", "0"),
        ("Accepted", None),  # not locked: no value
        ("Rejected", None),  # WriteOnly
        ("Rejected", None),
        ("Accepted", SERIAL),
        ("Accepted", "1"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
    ]


async def test_set_variables_follows_the_ticket_rules(rig: Rig) -> None:
    store = rig.daemon.store
    # A mandatory-class charger: the PIN cannot be turned off, by ticket or by setting.
    refused = await set_(rig, "BluetoothPin", "Enabled", "false")
    assert refused["attribute_status"] == "Rejected"
    assert refused["attribute_status_info"]["reason_code"] == "NotAllowed"
    assert store.pin_enabled
    weak = await set_(rig, "BluetoothPin", "Pin", "123456")
    assert weak["attribute_status"] == "Rejected"
    assert "easy to guess" in weak["attribute_status_info"]["additional_info"]
    assert (await set_(rig, "BluetoothPin", "Epoch", "9"))["attribute_status"] == "Rejected"
    accepted = await set_(rig, "BluetoothPin", "Pin", "385172")
    assert accepted["attribute_status"] == "Accepted"
    assert str(store.current_pin()) == "385172"
    [change] = await rig.events_of("ReconfigurationOfSecurityParameters")
    assert json.loads(change["tech_info"])["origin"] == "ocpp"


async def test_a_password_set_by_the_csms_is_used_from_the_next_connection(rig: Rig) -> None:
    short = await set_(rig, "SecurityCtrlr", "BasicAuthPassword", "short")
    assert short["attribute_status"] == "Rejected"
    result = await set_(rig, "SecurityCtrlr", "BasicAuthPassword", "a-password-the-csms-chose")
    assert result["attribute_status"] == "Accepted"
    assert rig.daemon.store.csms_password == "a-password-the-csms-chose"
    # The CSMS now expects the new password only; the charger reconnects with it.
    rig.csms.passwords[SERIAL] = "a-password-the-csms-chose"
    connections = rig.link.connections
    await rig.csms.stop()
    await rig.csms.start()
    await rig.csms.wait_for(lambda: rig.link.connections > connections)
    assert rig.csms.refused == []


async def test_get_base_report_is_answered_with_notify_report(rig: Rig) -> None:
    response = await rig.csms.ask(
        SERIAL, call.GetBaseReport(request_id=7, report_base="FullInventory")
    )
    assert response.status == "Accepted"
    await rig.csms.wait_for(lambda: len(rig.received.reports) >= 1)
    [report] = rig.received.reports
    assert report["request_id"] == 7 and report["tbc"] is False
    by_name = {
        (d["component"]["name"], d["variable"]["name"]): d["variable_attribute"][0]
        for d in report["report_data"]
    }
    assert by_name[("BluetoothPin", "Enabled")] == {
        "type": "Actual",
        "mutability": "ReadWrite",
        "persistent": True,
        "constant": False,
        "value": "true",
    }
    assert "value" not in by_name[("BluetoothPin", "Pin")]
    assert "value" not in by_name[("SecurityCtrlr", "BasicAuthPassword")]
    assert by_name[("BluetoothPin", "Pin")]["mutability"] == "WriteOnly"
    summary = await rig.csms.ask(
        SERIAL, call.GetBaseReport(request_id=8, report_base="SummaryInventory")
    )
    assert summary.status == "NotSupported"


async def test_reset_immediate_stops_charging_reports_and_asks_for_the_restart(rig: Rig) -> None:
    rig.daemon.evse.apply(ControlCommand(ControlOp.START))
    answer = await rig.csms.ask(SERIAL, call.Reset(type="Immediate"))
    assert answer.status == "Accepted"
    await asyncio.wait_for(rig.link.resets.requested.wait(), 5)
    assert rig.daemon.evse.status.state is ChargingState.IDLE  # B12: charging stops first
    [reset] = await rig.events_of("ResetOrReboot")
    assert json.loads(reset["tech_info"]) == {
        "origin": "ocpp",
        "reset": "Immediate",
        "epoch": rig.daemon.store.epoch,
    }


async def test_reset_on_idle_waits_for_the_charging_session_to_end(rig: Rig) -> None:
    rig.daemon.evse.apply(ControlCommand(ControlOp.START))
    answer = await rig.csms.ask(SERIAL, call.Reset(type="OnIdle"))
    assert answer.status == "Scheduled"
    # One more round trip: the station has acted on the Reset (after its answer) by now.
    await rig.csms.ask(SERIAL, data_transfer("challenge"))
    assert not rig.link.resets.requested.is_set()
    assert rig.daemon.evse.status.state is ChargingState.CHARGING
    rig.daemon.evse.apply(ControlCommand(ControlOp.STOP))
    await asyncio.wait_for(rig.link.resets.requested.wait(), 5)
    [reset] = await rig.events_of("ResetOrReboot")
    assert json.loads(reset["tech_info"])["reset"] == "OnIdle"


async def test_a_reset_of_one_evse_is_rejected_and_nothing_restarts(rig: Rig) -> None:
    answer = await rig.csms.ask(SERIAL, call.Reset(type="Immediate", evse_id=1))
    assert answer.status == "Rejected"
    assert answer.status_info["reason_code"] == "EvseResetUnsupported"
    await rig.csms.ask(SERIAL, data_transfer("challenge"))
    assert not rig.link.resets.requested.is_set()


async def test_the_back_off_starts_again_after_an_accepted_boot(bed: Testbed) -> None:
    """A CSMS that accepts the boot and hangs up: reconnections stay at the shortest wait.

    Without the reset the waits would double (0.05, 0.1, ... 1.6 s: 6 connections in 3 s).
    """
    accepted: list[float] = []

    async def accept_then_hang_up(connection: ServerConnection) -> None:
        frame = json.loads(await connection.recv())
        boot = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}
        await connection.send(json.dumps([3, frame[1], boot]))
        accepted.append(asyncio.get_running_loop().time())
        await connection.recv()  # the StatusNotification: the station took the boot
        await connection.close()

    timings = StationTimings(
        response_timeout=2.0,
        open_timeout=2.0,
        backoff_min=0.05,
        backoff_max=1.6,
        ping_interval=None,
    )
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)})
    csms.on_connect = accept_then_hang_up
    await csms.start()
    link = start_link(daemon, csms, timings)
    try:
        # With the reset, 10 connections take well under 2 s; without it, about 8 s.
        await csms.wait_for(lambda: len(accepted) >= 10, timeout=5.0)
    finally:
        await link.stop()
        await csms.stop()


async def test_wss_with_a_private_ca_and_nothing_without_it(
    bed: Testbed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Security profile 2: the CSMS's certificate is checked against --csms-ca; a charger that
    does not trust the CA never sends its password (no boot, the CSMS sees no request)."""
    ca_file, server_tls = private_ca(tmp_path)
    daemon = await bed.charger(ChargerSpec(serial=SERIAL))
    csms = TestCsms({SERIAL: csms_password(daemon.store.secret, SERIAL)}, tls=server_tls)
    await csms.start()
    endpoint = csms_endpoint(csms.url(), SERIAL)
    assert endpoint.security_profile == 2
    untrusting = StationLink(daemon, StationConfig(endpoint, timings=FAST))
    untrusting.start()
    try:
        await csms.wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text)
        assert csms.of(SERIAL).boots == [] and csms.refused == []
    finally:
        await untrusting.stop()
    trusting = StationLink(daemon, StationConfig(endpoint, ca_file=ca_file, timings=FAST))
    trusting.start()
    try:
        await asyncio.wait_for(trusting.connected.wait(), 10)
        assert csms.of(SERIAL).boots[0]["serial_number"] == SERIAL
        results = await get_from(csms, ("SecurityCtrlr", "SecurityProfile"))
        assert results[0]["attribute_value"] == "2"
    finally:
        await trusting.stop()
        await csms.stop()


async def get_from(csms: TestCsms, *names: tuple[str, str]) -> list[dict[str, Any]]:
    response = await csms.ask(
        SERIAL, call.GetVariables(get_variable_data=[variable(c, n) for c, n in names])
    )
    return list(response.get_variable_result)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
