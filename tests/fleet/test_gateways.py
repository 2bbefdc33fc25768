"""OCPP gateways in the database (fleet/csms/gateways.py): the heartbeat rows, the sweep's
query, migration 0013 both ways, and the modes that need PostgreSQL refused on SQLite. The
gateways as processes: tests/scenarios/test_ocpp_gateways.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.csms import gateways
from chargepin.fleet.db import alembic_config, make_engine, migrate, session_factory, transaction
from chargepin.fleet.models import Charger, CsmsCommand, CsmsConnection
from tests.helpers.cli import invoke

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_a_gateway_is_alive_while_it_beats_and_gone_when_it_retires(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    try:
        with transaction(sessions) as db:
            assert not gateways.alive(db, "g1", NOW)  # never heard of
            gateways.beat(db, "g1", NOW)
            gateways.beat(db, "g2", NOW - gateways.FORGET + dt.timedelta(seconds=1))
        with transaction(sessions) as db:
            assert gateways.alive(db, "g1", NOW + gateways.GRACE)
            assert not gateways.alive(db, "g1", NOW + gateways.GRACE + dt.timedelta(seconds=1))
            assert not gateways.alive(db, "g2", NOW)
            gateways.beat(db, "g1", NOW + dt.timedelta(seconds=2))  # forgets g2 (dead too long)
        with transaction(sessions) as db:
            assert gateways.alive(db, "g1", NOW + gateways.GRACE + dt.timedelta(seconds=2))
            gateways.beat(db, "g2", NOW)  # a frozen gateway that wakes up registers again
            assert gateways.alive(db, "g2", NOW)
            gateways.retire(db, "g1")
        with transaction(sessions) as db:
            assert not gateways.alive(db, "g1", NOW)
    finally:
        engine.dispose()


def test_the_sweep_finds_the_waiting_commands_of_the_gateway_s_open_connections(
    db_url: str,
) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    try:
        with transaction(sessions) as db:
            ids = []
            for n in range(4):
                charger = Charger(
                    serial=f"CPSW{n:04d}",
                    model="Pulsar Max",
                    firmware=FirmwareVersion.parse("6.11.2"),
                    produced=dt.date(2025, 9, 1),
                    secret_ct=b"sealed elsewhere",
                )
                db.add(charger)
                db.flush()
                ids.append(charger.id)
            # 0 and 1 held by g1, 2 by g2, 3 by g1 but its socket closed.
            for charger_id, gateway in zip(ids, ["g1", "g1", "g2", "g1"], strict=True):
                db.add(
                    CsmsConnection(
                        charger_id=charger_id,
                        connection_id=f"c{charger_id}",
                        process=gateway,
                        connected_at=NOW,
                        last_seen=NOW,
                        closed_at=NOW if charger_id == ids[3] else None,
                    )
                )
            states = ["waiting", "sent", "waiting", "waiting"]
            for charger_id, state in zip(ids, states, strict=True):
                for _ in range(2):
                    db.add(
                        CsmsCommand(
                            charger_id=charger_id,
                            action="rekey",
                            args={},
                            state=state,
                            created_at=NOW,
                            updated_at=NOW,
                        )
                    )
        with transaction(sessions) as db:
            assert gateways.waiting(db, "g1") == [ids[0]]
            assert gateways.waiting(db, "g2") == [ids[2]]
            assert gateways.waiting(db, "g3") == []
    finally:
        engine.dispose()


def test_migration_0013_up_down_and_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        assert "csms_gateways" in inspect(engine).get_table_names()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0012")
        assert "csms_gateways" not in inspect(engine).get_table_names()
        indexes = {i["name"] for i in inspect(engine).get_indexes("csms_connections")}
        assert "ix_csms_connections_process" not in indexes
        migrate(engine)
        assert "csms_gateways" in inspect(engine).get_table_names()
        indexes = {i["name"] for i in inspect(engine).get_indexes("csms_connections")}
        assert "ix_csms_connections_process" in indexes
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("fleet", "gateway", "--port", "18999"), "an OCPP gateway"),
        (("fleet", "serve", "--no-ocpp", "--port", "18999"), "serving without OCPP"),
    ],
)
def test_gateway_modes_need_postgresql(tmp_path: Path, args: tuple[str, ...], what: str) -> None:
    database = tmp_path / "fleet.db"
    keys = tmp_path / "key.json"
    code, _, err = invoke(*args, "--db", f"sqlite:///{database}", "--vault-key-file", str(keys))
    assert code == 2, err
    assert what in err and "needs PostgreSQL" in err
    assert not database.exists()  # refused before anything was opened


def test_a_gateway_refuses_hosts_off_loopback() -> None:
    code, _, err = invoke("fleet", "gateway", "--port", "18999", "--host", "0.0.0.0")
    assert code == 2 and "loopback only" in err
