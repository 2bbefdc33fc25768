"""`chargepin fleet status [--json]`: the figures to watch, read by a real process from a fleet's
database on SQLite and PostgreSQL (fleet/status.py, docs/DEPLOY.md "What to watch"). The rows
are written as the gateways would have; ages are on the wall clock, as the gateways beat."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import time
from pathlib import Path

import sqlalchemy
from sqlalchemy import select

from chargepin.clock import FakeClock
from chargepin.fleet.models import (
    Charger,
    CsmsCommand,
    CsmsConnection,
    CsmsGateway,
    SourceHit,
    StationSecurityEvent,
)
from chargepin.lab.processes import CHARGEPIN
from tests.helpers.cli import invoke
from tests.helpers.fleet_factory import MANDATORY
from tests.helpers.fleet_settings import start_fleet


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHARGEPIN, "fleet", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def window_with_room(now: float, margin: float = 120.0) -> int:
    """A counting window whose current one lasts past the test (no sleeping for a fresh one)."""
    return next(w for w in range(600, 3601) if w - now % w >= margin)


def test_the_figures_of_a_fleet_with_a_dead_gateway_and_a_waiting_command(db_url: str) -> None:
    fleet = start_fleet(db_url, FakeClock())
    fleet.provision(MANDATORY.model, MANDATORY.firmware, count=3)
    window = window_with_room(time.time())
    now = dt.datetime.now(dt.UTC)
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    with fleet.state.sessions() as db, db.begin():
        ids = list(db.scalars(select(Charger.id).order_by(Charger.id)))
        db.add_all(
            [
                # Heard ahead on the wall clock (as gateways.staged does for a scene): alive
                # however long the commands below take to start on a loaded machine.
                CsmsGateway(id="host-a:1:live", started_at=ago(600), last_seen=ago(-3600)),
                CsmsGateway(id="host-b:2:dead", started_at=ago(600), last_seen=ago(60)),
            ]
        )
        for charger_id, process, closed in (
            (ids[0], "host-a:1:live", None),
            (ids[1], "host-b:2:dead", None),
            (ids[2], "host-a:1:live", ago(300)),
        ):
            db.add(
                CsmsConnection(
                    charger_id=charger_id,
                    connection_id=f"c{charger_id}",
                    process=process,
                    connected_at=ago(500),
                    last_seen=ago(5),
                    closed_at=closed,
                )
            )
        for age, state in ((90, "waiting"), (10, "waiting"), (400, "applied")):
            db.add(
                CsmsCommand(
                    charger_id=ids[1],
                    action="rotate",
                    args={},
                    state=state,
                    created_at=ago(age),
                    updated_at=ago(age),
                )
            )
        for n, age in enumerate((10, 1800, 7200)):
            db.add(
                StationSecurityEvent(
                    charger_id=ids[0],
                    event_id=f"e{n}",
                    type="InvalidChargingStationCertificate",
                    occurred_at=ago(age),
                    received_at=ago(age),
                )
            )
        bucket = math.floor(time.time() / window)
        for number, source, hits in ((bucket, "203.0.113.5", 5), (bucket, "203.0.113.6", 3)):
            db.add(SourceHit(bucket=number, source=source, hits=hits))
        db.add(SourceHit(bucket=bucket - 1, source="203.0.113.7", hits=99))
    fleet.dispose()

    answer = status("--db", db_url, "--json", "--source-rate", "4", "--source-window", str(window))
    assert answer.returncode == 0, answer.stderr
    figures = json.loads(answer.stdout)
    assert figures["chargers_provisioned"] == 3
    gateways = {g["id"]: g for g in figures["gateways"]}
    assert gateways["host-a:1:live"]["alive"] and gateways["host-a:1:live"]["chargers"] == 1
    assert not gateways["host-b:2:dead"]["alive"] and gateways["host-b:2:dead"]["chargers"] == 1
    assert 60 <= gateways["host-b:2:dead"]["heartbeat_age_s"] < 120
    assert figures["chargers_connected"] == 1 and figures["chargers_on_dead_gateways"] == 1
    assert figures["commands"] == {"waiting": 2, "sent": 0, "applied": 1, "failed": 0}
    assert 90 <= figures["oldest_waiting_s"] < 150
    assert (figures["events_last_minute"], figures["events_last_hour"]) == (1, 2)
    assert (figures["sources_counted"], figures["sources_over_rate"]) == (2, 1)
    assert figures["busiest_source_hits"] == 5
    database = figures["database"]
    if db_url.startswith("postgresql"):
        assert database["max_connections"] >= 1 and database["waiting_on_locks"] == 0
    else:
        assert database is None

    code, text, _ = invoke("fleet", "status", "--db", db_url, "--source-rate", "4")
    assert code == 0
    assert "gateways: 1 alive, 1 dead" in text
    assert "host-b:2:dead: DEAD, heartbeat " in text
    assert "commands: 2 waiting, 0 sent, 1 applied, 0 failed; oldest waiting: " in text


def test_status_reads_only_a_database_of_its_schema_and_changes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    if db_url.startswith("sqlite"):
        missing = tmp_path / "nowhere.db"
        code, _, error = invoke("fleet", "status", "--db", f"sqlite:///{missing}")
        assert code == 2 and "no fleet database at" in error
        assert not missing.exists()
        code, _, error = invoke("fleet", "status", "--db", "postgres://fleet:s3cret@db/fleet")
        assert code == 2 and "is not a database URL the service can use" in error
        assert "s3cret" not in error
        return
    engine = sqlalchemy.create_engine(db_url)
    try:
        code, _, error = invoke("fleet", "status", "--db", db_url)
        assert code == 2 and "run `chargepin fleet migrate`" in error, error
        with engine.connect() as connection:  # not migrated by the look
            assert not sqlalchemy.inspect(connection).has_table("chargers")
    finally:
        engine.dispose()
