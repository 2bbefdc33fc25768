"""Exactly once over OCPP (issue 12): every outbox command has its own op, sealed in each ticket
for it when the charger's firmware knows it; a station that applied a ticket whose answer was
lost gets the command again, applies nothing, and the command ends applied with the state the
charger is in. The station is tests/helpers/ocpp_station.py, which decides as the charger does
(core/applied_ops.py); the real daemon's side is tests/charger/test_ocpp_station.py."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from chargepin.clock import FakeClock
from chargepin.core.tickets import Action
from chargepin.fleet.db import alembic_config, make_engine, migrate
from chargepin.fleet.models import Charger, CsmsCommand
from chargepin.lab.live_server import serve
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_records import MANDATORY, add_charger, charger_row
from tests.helpers.ocpp_station import OP_FIRMWARE_TEXT, OwnerDesk, StationState, station
from tests.helpers.processes import until

NOW = dt.datetime(2026, 5, 1, 12, 0)


@pytest.fixture
def live(client: TestClient) -> Iterator[str]:
    with serve(client.app) as base_url:  # type: ignore[arg-type]
        yield base_url


async def commands_of(live: str, serial: str, owner: dict[str, str]) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=live) as http:
        answer = await http.get(f"/chargers/{serial}/commands", headers=owner)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def until_state(live: str, serial: str, owner: dict[str, str], state: str) -> None:
    async def reached() -> bool:
        commands = await commands_of(live, serial, owner)
        return bool(commands) and commands[0]["state"] == state

    await until(reached, f"the command {state}")


def op_of(client: TestClient, command_id: object) -> str:
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        op = db.scalar(select(CsmsCommand.op).where(CsmsCommand.id == command_id))
    assert isinstance(op, str)
    return op


async def test_a_command_whose_answer_was_lost_is_applied_once_and_ends_applied(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    state = StationState(drop_before_answering_ticket=True)
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot(firmware=OP_FIRMWARE_TEXT)
        queued = client.post(
            f"/chargers/{charger.serial}/commands", json={"action": "rekey"}, headers=owner
        )
        assert queued.status_code == 202, queued.text
        # Applied, and the connection lost before the answer left: the command stays sent.
        await asyncio.wait_for(sim._connection.wait_closed(), 10)
        await until_state(live, charger.serial, owner, "sent")
    assert state.pin.generation == 1 and charger_row(client, charger.serial).generation == 0
    # The station comes back: the command goes again, sealed for a new challenge.
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot(firmware=OP_FIRMWARE_TEXT)
        await until_state(live, charger.serial, owner, "applied")
    op = op_of(client, queued.json()["id"])
    assert [(t.action, t.arg("op")) for t in state.applied] == [(Action.REKEY, op)]
    assert [(t.action, t.arg("op")) for t in state.repeats] == [(Action.REKEY, op)]
    assert state.applied[0].challenge != state.repeats[0].challenge
    assert state.pin.generation == 1  # re-keyed once, not twice
    assert charger_row(client, charger.serial).generation == 1  # the fleet's view is right
    [command] = await commands_of(live, charger.serial, owner)
    assert command["attempts"] == 2 and command["receipt"]


async def test_older_firmware_gets_tickets_without_an_op(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    state = StationState()
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot(firmware="6.11.2")  # before OP_FIRMWARE: it would refuse the argument
        for _ in range(2):
            queued = client.post(
                f"/chargers/{charger.serial}/commands", json={"action": "rekey"}, headers=owner
            )
            assert queued.status_code == 202, queued.text

        async def both_applied() -> bool:
            return len(state.applied) == 2

        await until(both_applied, "both re-keys applied")
        await until_state(live, charger.serial, owner, "applied")
    assert [t.arg("op") for t in state.applied] == [None, None]
    assert charger_row(client, charger.serial).generation == 2


def test_the_op_is_the_fleet_s_and_every_command_has_its_own(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    refused = client.post(
        f"/chargers/{charger.serial}/commands",
        json={"action": "rekey", "args": {"op": "0" * 32}},
        headers=owner,
    )
    assert refused.status_code == 422, refused.text
    assert "the fleet's own" in refused.text
    ids = [
        client.post(
            f"/chargers/{charger.serial}/commands", json={"action": "rekey"}, headers=owner
        ).json()["id"]
        for _ in range(3)
    ]
    ops = {op_of(client, command_id) for command_id in ids}
    assert len(ops) == 3 and all(len(op) == 32 and int(op, 16) >= 0 for op in ops)
    listed = client.get(f"/chargers/{charger.serial}/commands", headers=owner).json()
    assert all("op" not in command["args"] for command in listed)


def test_migration_0015_gives_queued_commands_an_op_and_goes_down_and_up(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0014")
        assert "op" not in {c["name"] for c in inspect(engine).get_columns("csms_commands")}
        # Commands queued before the upgrade, for a charger made before it.
        with engine.begin() as connection:
            connection.execute(
                Charger.__table__.insert().values(  # type: ignore[attr-defined]
                    serial="CP-MIG",
                    model="Pulsar Max",
                    firmware="6.11.2",
                    produced=dt.date(2025, 9, 1),
                    secret_ct=b"sealed elsewhere",
                    claim_lockout={},
                    pin_enabled=True,
                    epoch=0,
                    generation=0,
                    created_at=NOW,
                )
            )
            charger_id = connection.scalar(text("SELECT id FROM chargers"))
            for _ in range(3):
                connection.execute(
                    text(
                        "INSERT INTO csms_commands (charger_id, action, args, state, created_at,"
                        " updated_at, attempts) VALUES (:charger, 'rekey', '{}', 'sent', :now,"
                        " :now, 1)"
                    ),
                    {"charger": charger_id, "now": NOW},
                )
        migrate(engine)
        with engine.begin() as connection:
            ops = connection.scalars(text("SELECT op FROM csms_commands")).all()
        assert len(set(ops)) == 3 and all(len(op) == 32 and int(op, 16) >= 0 for op in ops)
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("csms_commands")}
        assert indexes["ix_csms_commands_op"]["unique"]
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO csms_commands (charger_id, op, action, args, state, created_at,"
                    " updated_at, attempts) VALUES (:charger, :op, 'rekey', '{}', 'waiting',"
                    " :now, :now, 0)"
                ),
                {"charger": charger_id, "op": ops[0], "now": NOW},
            )
    finally:
        engine.dispose()


async def test_a_repeat_answered_with_a_later_pin_does_not_commit_the_older_change(
    client: TestClient, live: str, fleet_clock: FakeClock
) -> None:
    """The owner's PIN X goes by OCPP, applied, answer lost; meanwhile the owner's phone sets Y
    over Bluetooth (its ticket has no op) and hands in its receipt. The repeat of X is answered
    with Y's state: the fleet must keep Y, not take the receipt as X's confirmation."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    state = StationState(drop_before_answering_ticket=True)
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot(firmware=OP_FIRMWARE_TEXT)
        queued = client.post(
            f"/chargers/{charger.serial}/commands",
            json={"action": "change_pin", "args": {"pin": "385172"}},
            headers=owner,
        )
        assert queued.status_code == 202, queued.text
        await asyncio.wait_for(sim._connection.wait_closed(), 10)
        await until_state(live, charger.serial, owner, "sent")
    # The phone, over Bluetooth: the charger's challenge, a ticket for Y, the receipt handed in.
    desk = OwnerDesk(charger.serial, charger.secret, fleet_clock.now, state)
    _, challenge = desk.data_transfer("org.chargepin", "challenge", None)
    ticket = client.post(
        f"/chargers/{charger.serial}/tickets",
        json={"challenge": challenge, "action": "change_pin", "args": {"pin": "749263"}},
        headers=owner,
    )
    assert ticket.status_code == 200, ticket.text
    status, answer = desk.data_transfer("org.chargepin", "ticket", ticket.json()["ticket"])
    assert status == "Accepted" and answer["ok"], answer
    handed = client.post(
        f"/chargers/{charger.serial}/receipts", json={"receipt": answer["receipt"]}, headers=owner
    )
    assert handed.status_code == 200, handed.text
    with_y = charger_row(client, charger.serial)
    assert with_y.pending is None
    async with station(live, charger.serial, charger.secret, fleet_clock.now, state) as sim:
        await sim.boot(firmware=OP_FIRMWARE_TEXT)
        await until_state(live, charger.serial, owner, "applied")
    assert [t.arg("pin") for t in state.applied] == ["385172", "749263"]
    assert [t.arg("pin") for t in state.repeats] == ["385172"]
    after = charger_row(client, charger.serial)
    assert after.custom_pin_ct == with_y.custom_pin_ct  # Y, as the charger has it
    assert after.pending is None
