"""`chargepin bench reveal-growth` with tiny numbers: the report's shape and the PNG, never its
times. Every step ran against the real thing: chargers provisioned by the factory, audit rows
filled in the database, the fleet app and the bare app served by uvicorn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargepin.lab.bench_reveal_growth import FLAT_TARGET, run_growth_bench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_growth_bench_measures_every_step_and_draws_the_curves(tmp_path: Path) -> None:
    report_path, png_path = tmp_path / "growth.json", tmp_path / "growth.png"

    code = run_growth_bench(
        report_path, png_path, sizes=(20,), audit_rows=3000, seconds=0.2, concurrency=2
    )

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1)
    assert report["database"] == "sqlite"
    assert report["command"].startswith("chargepin bench reveal-growth --json ")
    steps = report["steps"]
    assert [s["chargers"] for s in steps] == [20, 20]
    # The audit grows with the measured reveals; the last step adds the bulk fill on top.
    assert 0 < steps[0]["audit_rows"] < 3000 < steps[1]["audit_rows"]
    for step in steps:
        for arm in (step["reveal"], step["bare"]):
            assert arm["requests"] > 0 and arm["server_cpu_ms_per_request"] > 0
        assert step["cpu_ratio"] == pytest.approx(
            step["reveal"]["server_cpu_ms_per_request"] / step["bare"]["server_cpu_ms_per_request"],
            abs=0.01,
        )
        assert len(step["load_average"]) == 3
    assert report["growth"] == pytest.approx(
        steps[-1]["cpu_ratio"] / steps[0]["cpu_ratio"], abs=0.01
    )
    assert report["pass"] == (report["growth"] <= FLAT_TARGET)
    assert png_path.read_bytes()[:8] == PNG_MAGIC


def test_sizes_must_grow() -> None:
    assert run_growth_bench(None, None, sizes=(100, 10), audit_rows=0) == 2
