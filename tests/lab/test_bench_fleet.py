"""`chargepin bench fleet` end to end with tiny numbers: the report's shape, never its times.

What must hold is that every measurement ran against the real thing (chargers provisioned into
a SQLite file, the fleet app and the bare app served by uvicorn in their own processes, PIN
reveals answered and audited) and that the JSON carries what docs/PERFORMANCE.md promises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from chargepin.lab.bench_fleet import CPU_RATIO_TARGET, RATIO_TARGET, run_fleet_bench

LATENCY_KEYS = {"p50", "p99", "mean", "min", "max", "n"}


def assert_arm(arm: dict[str, Any]) -> None:
    assert arm["requests"] > 0
    assert arm["seconds"] > 0 and arm["requests_per_s"] > 0
    latency = arm["latency_ms"]
    assert set(latency) == LATENCY_KEYS
    assert latency["n"] == arm["requests"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert arm["server_cpu_ms_per_request"] >= 0


@pytest.mark.slow
def test_bench_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_path = tmp_path / "fleet.json"

    code = run_fleet_bench(report_path, chargers=200, seconds=0.3, concurrency=2)

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1)
    assert report["command"] == (
        f"chargepin bench fleet --json {report_path} --chargers 200 --seconds 0.3 --concurrency 2"
    )
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["uvicorn"]

    provisioning = report["provisioning"]
    assert provisioning["chargers"] == 200
    assert provisioning["seconds"] > 0 and provisioning["rows_per_s"] > 0
    assert provisioning["pass"] == (provisioning["seconds"] <= provisioning["target_s"])

    reveal = report["pin_reveal"]
    assert_arm(reveal["reveal"])
    assert_arm(reveal["bare"])
    assert reveal["ratio"] > 0
    assert reveal["target"] == RATIO_TARGET
    assert reveal["pass"] == (reveal["ratio"] >= RATIO_TARGET)
    assert reveal["cpu_target"] == CPU_RATIO_TARGET and reveal["cpu_ratio"] >= 0
    assert reveal["cpu_pass"] == (reveal["cpu_ratio"] <= CPU_RATIO_TARGET)
    assert len(reveal["load_average"]) == 3
    # Every reveal was audited, the measured ones and the warm-up's.
    assert reveal["audit_rows"] >= reveal["reveal"]["requests"]
    assert report["pass"] == (provisioning["pass"] and reveal["pass"] and reveal["cpu_pass"])

    table = capsys.readouterr().out
    assert "bare FastAPI" in table and "PIN reveal" in table


def test_bench_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_fleet_bench(None, chargers=0, seconds=1.0, concurrency=1) == 2
    assert "at least 1" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CHARGEPIN_TEST_POSTGRES"), reason="needs a PostgreSQL server"
)
def test_bench_on_postgresql_with_two_workers_reports_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = os.environ["CHARGEPIN_TEST_POSTGRES"] + "/postgres"
    report_path = tmp_path / "fleet.json"

    code = run_fleet_bench(
        report_path, chargers=300, seconds=0.3, concurrency=2, db_url=server, workers=2
    )

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1), capsys.readouterr().out
    assert report["database"] == "postgresql" and report["workers"] == 2
    assert report["command"].endswith(f"--db-url {server} --workers 2")
    assert report["provisioning"]["chargers"] == 300
    assert report["provisioning"]["database_mib"] > 0
    reveal = report["pin_reveal"]
    assert_arm(reveal["reveal"])
    assert_arm(reveal["reveal_workers"])
    assert reveal["workers_to_one_ratio"] > 0
    # Both servers revealed from the one database: every reveal of both was audited there.
    assert (
        reveal["audit_rows"] >= reveal["reveal"]["requests"] + reveal["reveal_workers"]["requests"]
    )
    assert "2 workers" in capsys.readouterr().out
    # The bench's own database is gone again: nothing is left on the server.
    engine = create_engine(server)
    try:
        with engine.connect() as connection:
            left = connection.execute(
                text("SELECT count(*) FROM pg_database WHERE datname LIKE :mine"),
                {"mine": f"chargepin_bench_{os.getpid()}_%"},
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"workers": 2}, "--workers 2 needs PostgreSQL"),
        ({"db_url": "sqlite:///x.db"}, "--db-url must be a PostgreSQL URL"),
    ],
)
def test_bench_refuses_several_workers_without_postgresql(
    capsys: pytest.CaptureFixture[str], options: dict[str, Any], fragment: str
) -> None:
    assert run_fleet_bench(None, chargers=1, seconds=1.0, concurrency=1, **options) == 2
    assert fragment in capsys.readouterr().out.replace("\n", " ")
