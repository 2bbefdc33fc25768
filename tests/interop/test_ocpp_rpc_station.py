"""An independent Charging Station against our fleet: ocpp-rpc (npm, Node) in strict mode.

The fleet's CSMS served by a real uvicorn on 127.0.0.1 (SQLite), a charger made by the factory
and claimed by its owner; tests/interop/node/station.js connects as that charger with the
derived Basic auth password and validates every message both ways against ocpp-rpc's own
OCPP 2.0.1 schemas: every result the fleet gives, every CALL the fleet sends (a revocation's
DataTransfer tickets, a password rotation's SetVariables). The test answers those calls as the
charger would (`OwnerDesk`: the ticket opened, a receipt signed with the factory secret), the
answer validated by ocpp-rpc before it leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chargepin.clock import FakeClock
from chargepin.core import bond_statement
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.csms_auth import csms_password
from chargepin.core.ocpp_events import custom_data
from chargepin.core.tickets import Action
from chargepin.fleet.factory import Provisioned
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import LocalFleet
from chargepin.phone.fleet_client import FleetClient
from tests.helpers.ocpp_rpc import NodePeer, RpcCallFailed
from tests.helpers.ocpp_station import OwnerDesk, StationState

pytestmark = pytest.mark.slow

PHONE = "D1:22:33:44:55:66"


@dataclass
class Fleet:
    fleet: LocalFleet
    url: str
    made: Provisioned
    owner: FleetClient

    @property
    def serial(self) -> str:
        return self.made.serial

    @property
    def endpoint(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ocpp"

    def owner_http(self) -> httpx.AsyncClient:
        """The owner's session on the live server, for the endpoints FleetClient lacks."""
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.owner.token}"}
        )


@pytest.fixture
async def live(fleet: LocalFleet) -> AsyncIterator[Fleet]:
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    with serve(fleet.app) as url:
        yield Fleet(fleet, url, made, owner)


async def node_station(live: Fleet, password: str | None = None) -> tuple[NodePeer, dict[str, Any]]:
    """A Node station and how its connection went (`connected` or `connect_failed`)."""
    peer = await NodePeer.start("station.js")
    ref = await peer.send(
        "connect",
        endpoint=live.endpoint,
        identity=live.serial,
        password=password or csms_password(live.made.secret, live.serial),
    )
    outcome = await peer.wait_for(
        lambda: [e for e in peer.events if e.get("ref") == ref], "the connection's outcome"
    )
    return peer, outcome[0]


def boot_params(serial: str) -> dict[str, Any]:
    return {
        "reason": "PowerUp",
        "chargingStation": {
            "model": "Pulsar Max",
            "vendorName": "chargepin",
            "firmwareVersion": "6.11.2",
            "serialNumber": serial,
        },
    }


def security_event(serial: str, queue_id: int, event_type: str, info: dict[str, Any]) -> Any:
    return {
        "type": event_type,
        "timestamp": "2027-01-15T08:00:00.000Z",
        "techInfo": json.dumps(info, separators=(",", ":")),
        "customData": custom_data(serial, queue_id),  # exactly what our charger sends
    }


async def serve_calls(peer: NodePeer, desk: OwnerDesk, handled: list[dict[str, Any]]) -> None:
    """Answer every call the fleet made to the Node station so far, as the charger would."""
    for request in peer.of("request"):
        if request in handled:
            continue
        handled.append(request)
        params = request["params"]
        if request["method"] == "DataTransfer":
            status, data = desk.data_transfer(
                params["vendorId"], params.get("messageId"), params.get("data")
            )
            answer = {"status": status, **({} if data is None else {"data": data})}
        elif request["method"] == "SetVariables":
            results = []
            for item in params["setVariableData"]:
                desk.state.password = item["attributeValue"]
                results.append(
                    {
                        "attributeStatus": "Accepted",
                        "component": item["component"],
                        "variable": item["variable"],
                    }
                )
            answer = {"setVariableResult": results}
        else:
            raise AssertionError(f"the fleet called {request['method']}")
        await peer.answer(request, answer)


async def commands_done(
    live: Fleet, peer: NodePeer, desk: OwnerDesk, handled: list[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """Serve the fleet's calls until `count` commands are applied or failed; the commands."""
    async with live.owner_http() as http:

        async def settled() -> list[dict[str, Any]] | None:
            await serve_calls(peer, desk, handled)
            listed = (await http.get(f"/chargers/{live.serial}/commands")).json()
            done = [c for c in listed if c["state"] in ("applied", "failed")]
            return listed if len(done) >= count else None

        for _ in range(300):
            listed = await settled()
            if listed is not None:
                return listed
            await asyncio.sleep(0.02)
    raise AssertionError(f"commands not settled: {peer.events[-6:]}")


async def test_the_ocpp_rpc_station_and_our_fleet_validate_each_other(
    live: Fleet, fleet: LocalFleet, clock: FakeClock
) -> None:
    serial = live.serial
    station, connected = await node_station(live)
    try:
        assert connected["event"] == "connected" and connected["protocol"] == "ocpp2.0.1"
        boot = await station.call("BootNotification", boot_params(serial))
        assert boot["status"] == "Accepted" and boot["interval"] == 300
        assert "currentTime" in (await station.call("Heartbeat", {}))
        status = {
            "timestamp": "2027-01-15T08:00:00.000Z",
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 1,
        }
        assert await station.call("StatusNotification", status) == {}
        failed = {"origin": "ble", "phone": "AA:BB:CC:DD:EE:FF", "reason": "wrong_pin", "epoch": 0}
        locked = {"origin": "ble", "phone": "AA:BB:CC:DD:EE:FF", "failures": 5, "duration": 300}
        for queue_id, kind, info in (
            (1, "MaintenanceLoginFailed", failed),
            (1, "MaintenanceLoginFailed", failed),  # resent: the same eventId, stored once
            (2, "org.chargepin.PinLockout", locked),
        ):
            assert (
                await station.call(
                    "SecurityEventNotification", security_event(serial, queue_id, kind, info)
                )
                == {}
            )
        meanings = [e["meaning"] for e in await live.owner.security_events(serial)]
        assert meanings == [
            "5 wrong PINs from AA:BB:CC:DD:EE:FF: locked until 08:05 UTC",
            "wrong PIN from AA:BB:CC:DD:EE:FF (PIN epoch 0)",
        ]

        # The owner revokes a member whose phone the charger vouched for, with a re-key: the
        # fleet's DataTransfer challenge and ticket reach the Node station, twice.
        member = await fleet.account("member@example.com")
        await member.accept(await live.owner.invite(serial, "member@example.com"))
        secret = live.made.secret
        statement = bond_statement.make(
            secret,
            serial,
            BondedPhone(PHONE, 2, bond_statement.bond_id(secret, serial, b"member-phone-ltk")),
        )
        await member.relay_bond(serial, statement)
        member_id = next(
            m["user_id"] for m in await live.owner.members(serial) if m["role"] == "user"
        )
        desk = OwnerDesk(serial, secret, clock.now, StationState())
        handled: list[dict[str, Any]] = []
        revoked = await live.owner.revoke(serial, member_id, rekey=True)
        assert len(revoked["commands"]) == 2
        commands = await commands_done(live, station, desk, handled, 2)
        assert [(c["action"], c["state"]) for c in commands] == [
            ("rekey", "applied"),
            ("remove_phone", "applied"),
        ]
        assert [(t.action, dict(t.args)) for t in desk.state.applied] == [
            (Action.REMOVE_PHONE, {"address": PHONE}),
            (Action.REKEY, {}),
        ]

        # A password rotation: SetVariables SecurityCtrlr.BasicAuthPassword.
        async with live.owner_http() as http:
            queued = await http.post(
                f"/chargers/{serial}/commands", json={"action": "csms_password"}
            )
            assert queued.status_code == 202, queued.text
        commands = await commands_done(live, station, desk, handled, 3)
        assert (commands[0]["action"], commands[0]["state"]) == ("csms_password", "applied")
        rotated = desk.state.password
        assert rotated is not None and len(rotated) == 40

        # A schema-invalid call from the station: a CALLERROR from the fleet, which keeps the
        # connection and goes on.
        for payload in (
            {"type": 5, "timestamp": "2027-01-15T08:00:00.000Z"},
            {"type": "x" * 51, "timestamp": "2027-01-15T08:00:00.000Z"},
            {"timestamp": "2027-01-15T08:00:00.000Z"},
        ):
            error = await station.raw("SecurityEventNotification", payload)
            assert error[0] == 4, error
            assert error[2] in (
                "FormatViolation",
                "FormationViolation",
                "TypeConstraintViolation",
                "OccurrenceConstraintViolation",
                "PropertyConstraintViolation",
                "ProtocolError",  # a required field missing: "Payload for Action is incomplete"
            ), error
        # An action OCPP does not have, and one it has that the fleet does not take.
        unknown = await station.raw("OpenTheGarageDoor", {})
        assert unknown[:3] == [4, unknown[1], "NotImplemented"], unknown
        with pytest.raises(RpcCallFailed) as authorize:
            await station.call(
                "Authorize", {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}}
            )
        assert authorize.value.code == "NotSupported"
        assert "currentTime" in (await station.call("Heartbeat", {}))
        assert station.of("disconnected") == []
        # The oracle is on: ocpp-rpc will not even send a schema-invalid call, and says so.
        with pytest.raises(RpcCallFailed) as refused_call:
            await station.call("BootNotification", {"reason": "PowerUp"})
        assert refused_call.value.code == "OccurenceConstraintViolation"
        [failure] = station.failures
        assert (failure["event"], failure["outbound"]) == ("validation_failure", True)
        station.events.remove(failure)
        assert len(await live.owner.security_events(serial)) == 2  # nothing invalid was stored
        assert station.failures == [], station.failures
    finally:
        await station.close()

    # The rotated password gets in; the derived one no longer does.
    again, connected = await node_station(live, rotated)
    try:
        assert connected["event"] == "connected", connected
        assert (await again.call("BootNotification", boot_params(serial)))["status"] == "Accepted"
        assert again.failures == []
    finally:
        await again.close()
    old, refused = await node_station(live)
    await old.close()
    assert (refused["event"], refused["status"]) == ("connect_failed", 401), refused
