"""The fleet as an OCPP 2.0.1 CSMS: stations simulated with the `ocpp` package over
`websockets`, against the real app served by uvicorn on 127.0.0.1 (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from ocpp.exceptions import SecurityError
from ocpp.v201 import call
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from chargepin.clock import FakeClock
from chargepin.core.csms_auth import csms_password
from chargepin.core.pin_state import PinState
from chargepin.core.tickets import Action
from chargepin.fleet.models import CsmsCommand, CsmsConnection
from chargepin.lab.live_server import serve
from tests.helpers.fleet_accounts import invited, login
from tests.helpers.fleet_records import (
    OPTIONAL,
    ChargerModel,
    ChargerRecord,
    add_charger,
    charger_row,
)
from tests.helpers.fleet_settings import start_fleet
from tests.helpers.ocpp_station import SUBPROTOCOL, StationState, basic, station, ws_url

OLD_FIRMWARE = ChargerModel("Volt Home", "6.7.16", dt.date(2024, 3, 15), pin_enabled=False)
"""A charger whose firmware has no PIN support: Charger Info says "update your charger"."""
PHONE = "D1:22:33:44:55:66"


@pytest.fixture
def live(client: TestClient) -> Iterator[str]:
    with serve(client.app) as base_url:  # type: ignore[arg-type]
        yield base_url


def owner_and_charger(
    client: TestClient, kind: ChargerModel = OPTIONAL
) -> tuple[dict[str, str], ChargerRecord]:
    owner = login(client, "owner@example.com")
    return owner, add_charger(client, owner, kind)


async def refused(
    base_url: str, serial: str, headers: dict[str, str], protocols: list[str] | None = None
) -> int:
    """The HTTP status of a handshake the CSMS must refuse (an accepted socket fails the test)."""
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(
            ws_url(base_url, serial),
            subprotocols=protocols if protocols is not None else [SUBPROTOCOL],  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=10,
        ):
            pass
    return refusal.value.response.status_code


async def test_handshakes_without_the_charger_s_credentials_are_refused_before_the_upgrade(
    client: TestClient, live: str
) -> None:
    _owner, charger = owner_and_charger(client)
    other = add_charger(client, login(client, "owner@example.com"))
    password = csms_password(charger.secret, charger.serial)
    assert await refused(live, "CPX999999", basic("CPX999999", password)) == 401  # unknown
    wrong = password[:-1] + ("A" if password[-1] != "A" else "B")
    assert await refused(live, charger.serial, basic(charger.serial, wrong)) == 401
    second = csms_password(other.secret, other.serial)
    assert await refused(live, charger.serial, basic(charger.serial, second)) == 401
    # A station that proves to be `other` asking for `charger`'s socket.
    assert await refused(live, charger.serial, basic(other.serial, second)) == 401
    assert await refused(live, charger.serial, {}) == 401
    assert await refused(live, charger.serial, {"Authorization": "Basic %%%"}) == 401
    # The right credentials without the OCPP subprotocol.
    assert await refused(live, charger.serial, basic(charger.serial, password), []) == 400
    assert await refused(live, "NOT.A.SERIAL", basic(charger.serial, password)) == 404
    # and the right ones are served
    async with station(live, charger.serial, charger.secret, FakeClock().now) as sim:
        assert (await sim.boot()).status == "Accepted"


def firmware_of(client: TestClient, serial: str, owner: dict[str, str]) -> str:
    return str(client.get(f"/chargers/{serial}", headers=owner).json()["firmware"])


async def test_boot_records_the_firmware_and_so_the_pin_class(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client, OLD_FIRMWARE)
    info = client.get(f"/chargers/{charger.serial}", headers=owner).json()
    assert info["pin_class"] == "unsupported"
    async with station(live, charger.serial, charger.secret, fleet_clock.now) as sim:
        answer = await sim.boot(firmware="6.8.0")
        assert answer.status == "Accepted" and answer.interval == 300
        info = client.get(f"/chargers/{charger.serial}", headers=owner).json()
        assert (info["firmware"], info["pin_class"]) == ("6.8.0", "optional")
        # A garbage firmware string is kept out: the column keeps the last good version.
        assert (await sim.boot(firmware="6.8.0'; DROP TABLE chargers; --")).status == "Accepted"
        assert (
            client.get(f"/chargers/{charger.serial}", headers=owner).json()["firmware"] == "6.8.0"
        )
        # A station naming another serial in its boot is rejected, and changes nothing.
        assert (await sim.boot(firmware="9.9", serial_number="CP-OTHER")).status == "Rejected"
        assert (
            client.get(f"/chargers/{charger.serial}", headers=owner).json()["firmware"] == "6.8.0"
        )
        await sim.call(call.Heartbeat(), suppress=False)
        status = call.StatusNotification(
            timestamp=dt.datetime.now(dt.UTC).isoformat(),
            connector_status="Available",
            evse_id=1,
            connector_id=1,
        )
        await sim.call(status, suppress=False)
        link = client.get(f"/chargers/{charger.serial}/connection", headers=owner).json()
        assert link["online"] and link["connector_status"] == "Available"
    await asyncio.sleep(0)  # the socket's end is recorded by the server's task
    for _ in range(200):
        link = client.get(f"/chargers/{charger.serial}/connection", headers=owner).json()
        if not link["online"]:
            break
        await asyncio.sleep(0.01)
    assert not link["online"]


async def test_calls_before_boot_notification_are_refused(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    _owner, charger = owner_and_charger(client)
    async with station(live, charger.serial, charger.secret, fleet_clock.now) as sim:
        with pytest.raises(SecurityError):
            await sim.call(call.Heartbeat(), suppress=False)
        with pytest.raises(SecurityError):
            await sim.security_event("MaintenanceLoginFailed", None, 1, dt.datetime.now(dt.UTC))
        await sim.boot()
        await sim.call(call.Heartbeat(), suppress=False)


def events_of(
    client: TestClient, serial: str, headers: dict[str, str], **params: int
) -> httpx.Response:
    return client.get(f"/chargers/{serial}/security-events", headers=headers, params=params)


def tech_info(fields: dict[str, object]) -> str:
    return json.dumps(fields, separators=(",", ":"))


async def test_a_security_event_sent_twice_is_stored_once_and_shown_to_the_owner_in_words(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)
    at = dt.datetime(2026, 12, 5, 14, 0, tzinfo=dt.UTC)
    async with station(live, charger.serial, charger.secret, fleet_clock.now) as sim:
        await sim.boot()
        failed = tech_info({"origin": "ble", "phone": "aa:bb:cc:dd:ee:ff", "epoch": 12})
        await sim.security_event("MaintenanceLoginFailed", failed, 1, at)
        await sim.security_event("MaintenanceLoginFailed", failed, 1, at)  # resent: same id
        locked = tech_info(
            {"origin": "ble", "phone": "AA:BB:CC:DD:EE:FF", "failures": 5, "duration": 300}
        )
        await sim.security_event("org.chargepin.PinLockout", locked, 2, at)
        await sim.security_event("AttemptedReplayAttacks", '{"origin":"ble"}', 3, at)
        # A third-party station's event without our customData is kept as it comes.
        await sim.call(
            call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=at.isoformat()),
            suppress=False,
        )
    page = events_of(client, charger.serial, owner).json()
    assert [e["meaning"] for e in page] == [
        "the charger started",
        "a replayed owner ticket was refused",
        "5 wrong PINs from AA:BB:CC:DD:EE:FF: locked until 14:05 UTC",
        "wrong PIN from AA:BB:CC:DD:EE:FF (PIN epoch 12)",
    ]
    assert page[2]["type"] == "org.chargepin.PinLockout"
    # Keyset paging, as the phone-reported events.
    first = events_of(client, charger.serial, owner, limit=3).json()
    rest = events_of(client, charger.serial, owner, limit=3, before=first[-1]["id"]).json()
    assert [e["id"] for e in first + rest] == [e["id"] for e in page]


async def test_only_the_owner_sees_the_security_events(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)
    member = invited(client, owner, charger.serial, "member@example.com")
    revoked = invited(client, owner, charger.serial, "revoked@example.com")
    revoked_id = client.get("/me", headers=revoked).json()["id"]
    assert client.delete(
        f"/chargers/{charger.serial}/members/{revoked_id}", headers=owner
    ).is_success
    stranger = login(client, "stranger@example.com")
    assert events_of(client, charger.serial, owner).status_code == 200
    assert events_of(client, charger.serial, member).status_code == 403
    assert events_of(client, charger.serial, revoked).status_code == 403
    assert events_of(client, charger.serial, stranger).status_code == 404
    for who, status in ((member, 403), (revoked, 403), (stranger, 404)):
        assert client.get(f"/chargers/{charger.serial}/commands", headers=who).status_code == status


def member_with_phone(client: TestClient, owner: dict[str, str], charger: ChargerRecord) -> int:
    member = invited(client, owner, charger.serial, "member@example.com")
    relayed = client.post(
        f"/chargers/{charger.serial}/phones",
        json=charger.bond_statement(PHONE, 2, b"member-phone-ltk"),
        headers=member,
    )
    assert relayed.is_success, relayed.text
    return int(client.get("/me", headers=member).json()["id"])


async def wait_for_state(
    client: TestClient, serial: str, owner: dict[str, str], state: str
) -> dict[str, object]:
    for _ in range(500):
        commands = client.get(f"/chargers/{serial}/commands", headers=owner).json()
        if commands and commands[0]["state"] == state:
            return dict(commands[0])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no command reached {state}: {commands}")


async def test_revoking_a_member_removes_their_phone_from_an_online_charger(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)
    member_id = member_with_phone(client, owner, charger)
    state = StationState()
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot()
        async with httpx.AsyncClient(base_url=live) as http:
            revoked = await http.delete(
                f"/chargers/{charger.serial}/members/{member_id}", headers=owner
            )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["phones_to_remove"] == [PHONE]
        assert len(revoked.json()["commands"]) == 1
        await asyncio.wait_for(sim.ticket_arrived.wait(), 10)
        command = await wait_for_state(client, charger.serial, owner, "applied")
    # The ticket also carries the command's op (tests/fleet/test_exactly_once.py).
    assert [(t.action, t.arg("address")) for t in state.applied] == [(Action.REMOVE_PHONE, PHONE)]
    assert command["action"] == "remove_phone" and command["receipt"]
    # The charger forgot the phone: the member has no phone there any more.
    members = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    assert [m["phones"] for m in members if m["user_id"] == member_id] == [[]]


async def test_a_refused_ticket_fails_the_command_with_the_charger_s_reason(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)
    member_id = member_with_phone(client, owner, charger)
    state = StationState(refuse_with=("unknown_phone", "no bond with D1:22:33:44:55:66"))
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot()
        assert client.delete(
            f"/chargers/{charger.serial}/members/{member_id}", headers=owner
        ).is_success
        command = await wait_for_state(client, charger.serial, owner, "failed")
    assert command["reason"] == "unknown_phone"
    assert command["detail"] == "no bond with D1:22:33:44:55:66"
    assert not state.applied


async def test_an_offline_charger_s_command_waits_survives_a_restart_and_is_delivered_at_connect(
    db_url: str, fleet_clock: FakeClock
) -> None:
    from chargepin.fleet.vault import Vault

    vault = Vault.generate()
    first = start_fleet(db_url, fleet_clock, vault)
    with TestClient(first.app) as client:
        owner, charger = owner_and_charger(client)
        member_id = member_with_phone(client, owner, charger)
        revoked = client.delete(
            f"/chargers/{charger.serial}/members/{member_id}?rekey=true", headers=owner
        )
        assert revoked.status_code == 200, revoked.text
        assert len(revoked.json()["commands"]) == 2  # remove_phone, rekey
        listed = client.get(f"/chargers/{charger.serial}/commands", headers=owner).json()
        assert [c["state"] for c in listed] == ["waiting", "waiting"]
    first.dispose()  # the fleet stops; nothing of the command was in its memory
    second = start_fleet(db_url, fleet_clock, vault)
    state = StationState()
    with TestClient(second.app) as client, serve(second.app) as live:
        owner = login(client, "owner@example.com")
        async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
            await sim.boot()
            await wait_for_state(client, charger.serial, owner, "applied")
            listed = client.get(f"/chargers/{charger.serial}/commands", headers=owner).json()
            for _ in range(500):
                if all(c["state"] in ("applied", "failed") for c in listed):
                    break
                await asyncio.sleep(0.01)
                listed = client.get(f"/chargers/{charger.serial}/commands", headers=owner).json()
    assert [a.action for a in state.applied] == [Action.REMOVE_PHONE, Action.REKEY]
    assert [(c["action"], c["state"]) for c in listed] == [
        ("rekey", "applied"),
        ("remove_phone", "applied"),
    ]
    # The re-key was committed from the charger's receipt: the fleet follows generation 1.
    assert charger_row(client, charger.serial).generation == 1
    second.dispose()


async def test_an_owner_s_pin_change_reaches_an_online_charger_and_commits_with_its_receipt(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)  # optional class, PIN off
    state = StationState(pin=PinState(enabled=False, epoch=0))
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot()
        async with httpx.AsyncClient(base_url=live) as http:
            queued = await http.post(
                f"/chargers/{charger.serial}/commands",
                json={"action": "enable_pin", "args": {"pin": "385172"}},
                headers=owner,
            )
            assert queued.status_code == 202, queued.text
            assert queued.json()["state"] == "waiting"
            assert "385172" not in queued.text  # the chosen PIN waits sealed, never listed
            applied = await wait_for_state(client, charger.serial, owner, "applied")
        assert applied["attempts"] == 1
        info = client.get(f"/chargers/{charger.serial}", headers=owner).json()
        assert (info["pin_enabled"], info["pin"]) == (True, "385172")
        # A weak PIN is refused by the fleet before anything is queued, with the rule's reason.
        weak = client.post(
            f"/chargers/{charger.serial}/commands",
            json={"action": "change_pin", "args": {"pin": "123456"}},
            headers=owner,
        )
        assert weak.status_code == 422 and weak.json()["error"] == "weak_pin"
        assert "too easy to guess" in weak.json()["detail"]
        listed = client.get(f"/chargers/{charger.serial}/commands", headers=owner).json()
        assert [c["action"] for c in listed] == ["enable_pin"]
        assert "385172" not in json.dumps(listed)
        fleet = client.app.state.fleet  # type: ignore[attr-defined]
        with fleet.sessions() as db:
            stored = db.scalars(select(CsmsCommand.args)).all()
        assert "385172" not in json.dumps(stored) and all("pin" not in a for a in stored)
    assert state.pin.custom_pin is not None and state.pin.custom_pin.digits == "385172"
    # Only owner actions go over OCPP, and only the owner sends them.
    bad = client.post(
        f"/chargers/{charger.serial}/commands", json={"action": "list_phones"}, headers=owner
    )
    assert bad.status_code == 422
    member = login(client, "member@example.com")
    assert (
        client.post(
            f"/chargers/{charger.serial}/commands", json={"action": "rekey"}, headers=member
        ).status_code
        == 404
    )


async def test_a_connection_superseded_in_another_process_closes_at_its_next_heartbeat(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """Two fleet apps on one database (two processes' worth of state): the charger's newest
    connection, held by the second, makes the first's socket close when it next writes."""
    from chargepin.fleet.vault import Vault

    vault = Vault.generate()
    one, two = (
        start_fleet(db_url, fleet_clock, vault),
        start_fleet(db_url, fleet_clock, vault),
    )
    with TestClient(one.app) as client, serve(one.app) as live_one, serve(two.app) as live_two:
        owner, charger = owner_and_charger(client)
        async with station(live_one, charger.serial, charger.secret, fleet_clock.now) as old:
            await old.boot()
            async with station(live_two, charger.serial, charger.secret, fleet_clock.now) as new:
                await new.boot()
                with pytest.raises(SecurityError, match="newer connection"):
                    await old.call(call.Heartbeat(), suppress=False)
                await asyncio.wait_for(old._connection.wait_closed(), 10)
                await new.call(call.Heartbeat(), suppress=False)
                link = client.get(f"/chargers/{charger.serial}/connection", headers=owner).json()
                assert link["online"]
    one.dispose()
    two.dispose()


# ---------------------------------------------------------------------------- attacks


async def raw(live: str, charger: ChargerRecord) -> ClientConnection:
    return await connect(
        ws_url(live, charger.serial),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers=basic(charger.serial, csms_password(charger.secret, charger.serial)),
        open_timeout=60,  # 100 handshakes on a machine other suites share
        max_size=None,
    )


BOOT = json.dumps(
    [
        2,
        "b1",
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
    ]
)


async def test_malformed_frames_get_errors_and_never_end_the_service(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    _owner, charger = owner_and_charger(client)
    ws = await raw(live, charger)
    # Calls that are not valid messages get a CallError with the same id.
    for frame in (
        '[2, "x1", "BootNotification", {"bad": 1}]',
        '[2, "x2", "NoSuchAction", {}]',
        '[2, "x3", "Heartbeat", {}]',  # before BootNotification
    ):
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer[0] == 4 and answer[1] == frame.split('"')[1], answer
    # Results nobody asked for, and frames that are not OCPP-J at all, are dropped.
    for _ in range(200):
        await ws.send('[3, "nobody-asked", {}]')
    for frame in ("not json", "{}", "[2]", '"text"'):
        await ws.send(frame)
    await ws.send(BOOT)
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer[:2] == [3, "b1"] and answer[2]["status"] == "Accepted"
    # Past MAX_MALFORMED such frames the socket is closed (1002).
    for _ in range(10):
        await ws.send("garbage")
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 1002
    async with station(live, charger.serial, charger.secret, fleet_clock.now) as sim:
        assert (await sim.boot()).status == "Accepted"  # the service is fine


@pytest.mark.parametrize(
    ("frame", "code"), [(b"\x00" * 10, 1003), ("[" + " " * (64 * 1024) + "]", 1009)]
)
async def test_binary_and_oversized_frames_close_the_socket(
    client: TestClient, live: str, frame: str | bytes, code: int
) -> None:
    _owner, charger = owner_and_charger(client)
    ws = await raw(live, charger)
    await ws.send(frame)
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == code


async def test_a_charger_holds_one_connection_the_newest_of_100(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)
    sockets = []
    for _ in range(99):
        sockets.append(await raw(live, charger))
    # Two more at once: both are served, the charger ends with one of them.
    sockets += await asyncio.gather(raw(live, charger), raw(live, charger))
    # Until 100 are closed (not until a timeout: the survivor never closes by itself).
    pending = {asyncio.ensure_future(ws.wait_closed()) for ws in sockets}
    closed = 0
    while closed < 100:
        done, pending = await asyncio.wait(pending, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert done, f"only {closed} of the 100 older connections were closed within 60 s"
        closed += len(done)
    assert len(pending) == 1
    for waiter in pending:
        waiter.cancel()
    (newest,) = [ws for ws in sockets if ws.close_code is None]
    await newest.send(BOOT)
    answer = json.loads(await asyncio.wait_for(newest.recv(), 10))
    assert answer[2]["status"] == "Accepted"
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        rows = db.scalar(select(func.count()).select_from(CsmsConnection))
    assert rows == 1
    assert client.get(f"/chargers/{charger.serial}/connection", headers=owner).json()["online"]
    await newest.close()


async def test_a_silent_charger_is_offline_after_the_grace_period(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner, charger = owner_and_charger(client)

    def online() -> bool:
        link = client.get(f"/chargers/{charger.serial}/connection", headers=owner).json()
        return bool(link["online"])

    async with station(live, charger.serial, charger.secret, fleet_clock.now) as sim:
        await sim.boot()
        assert online()
        fleet_clock.advance(2 * 300 + 30)  # two heartbeat intervals and the margin: still in
        assert online()
        fleet_clock.advance(1)
        assert not online()  # the socket is open, but nothing was heard: offline
        await sim.call(call.Heartbeat(), suppress=False)
        assert online()


@pytest.mark.parametrize("answer_lost", [False, True])
async def test_the_fleet_rotates_a_charger_s_password_and_keeps_only_its_hash(
    client: TestClient,
    live: str,
    fleet_clock: FakeClock,
    answer_lost: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    owner, charger = owner_and_charger(client)
    derived = csms_password(charger.secret, charger.serial)
    state = StationState(drop_before_answering_password=answer_lost)
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot()
        queued = client.post(
            f"/chargers/{charger.serial}/commands", json={"action": "csms_password"}, headers=owner
        )
        assert queued.status_code == 202, queued.text
        if answer_lost:
            await asyncio.wait_for(sim._connection.wait_closed(), 10)
            await wait_for_state(client, charger.serial, owner, "sent")
        else:
            await wait_for_state(client, charger.serial, owner, "applied")
    assert state.password is not None and len(state.password) == 40
    # The new password gets in (and, if its answer was lost, that is when the fleet adopts it).
    async with station(
        live, charger.serial, charger.secret, fleet_clock.now, password=state.password
    ) as sim:
        assert (await sim.boot()).status == "Accepted"
    command = await wait_for_state(client, charger.serial, owner, "applied")
    assert "_digests" not in command["args"] and state.password not in json.dumps(command)
    row = charger_row(client, charger.serial)
    assert row.csms_password_hash == hashlib.sha256(state.password.encode()).digest()
    # The derived password no longer does.
    assert await refused(live, charger.serial, basic(charger.serial, derived)) == 401
    # The password never reached the service's log (the ocpp package logs every frame at INFO;
    # the simulated station's own "ocpp" log does show it, a charger must mind that too).
    fleet_log = [r.getMessage() for r in caplog.records if r.name.startswith("chargepin")]
    assert fleet_log and not [m for m in fleet_log if state.password in m]
