"""`chargepin bench fleet` end to end with tiny numbers: the report's shape, never its times.

What must hold is that every measurement ran against the real thing (chargers provisioned into
a SQLite file, the fleet app and the bare app served by uvicorn in their own processes, PIN
reveals answered and audited) and that the JSON carries what docs/PERFORMANCE.md promises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chargepin.lab.bench_fleet import RATIO_TARGET, run_fleet_bench

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
    # Every reveal was audited, the measured ones and the warm-up's.
    assert reveal["audit_rows"] >= reveal["reveal"]["requests"]
    assert report["pass"] == (provisioning["pass"] and reveal["pass"])

    table = capsys.readouterr().out
    assert "bare FastAPI" in table and "PIN reveal" in table


def test_bench_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_fleet_bench(None, chargers=0, seconds=1.0, concurrency=1) == 2
    assert "at least 1" in capsys.readouterr().out
