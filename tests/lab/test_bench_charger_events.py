"""`chargepin bench charger-events` at a tiny size: the report's shape and sanity, never its times.

Real parts: the daemon's state file and OCPP link, the bare `ocpp` CSMS in its own process, a
bare `ocpp` station beside the daemon's link.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargepin.lab.bench_charger_events import ARMS, TARGET_MS, run_charger_events_bench


@pytest.mark.slow
def test_bench_writes_a_complete_report(tmp_path: Path) -> None:
    report_path = tmp_path / "events.json"

    code = run_charger_events_bench(report_path, events=5, slices=3)

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1)
    assert report["command"] == (
        f"chargepin bench charger-events --json {report_path} --events 5 --slices 3"
    )
    assert set(report["arms"]) == set(ARMS) == {"chargepin", "bare", "bare_inline"}
    for arm in report["arms"].values():
        for figure in arm.values():
            assert len(figure["slices"]) == 3 and all(value > 0 for value in figure["slices"])
            assert min(figure["slices"]) <= figure["median"] <= max(figure["slices"])
    ours = report["arms"]["chargepin"]
    # The cause's own commit is part of the whole event, never more.
    assert ours["record_cpu_ms_per_event"]["median"] < ours["cpu_ms_per_event"]["median"]
    assert set(report["ratios"]) == {"chargepin_over_bare", "chargepin_over_bare_inline"}
    assert report["target_ms"] == TARGET_MS
    assert report["pass"] == (ours["cpu_ms_per_event"]["median"] <= TARGET_MS)
    # The profile names the daemon's own functions: the link sent and the store recorded.
    functions = {row["function"] for row in report["profile"]}
    assert any("ocpp_station.py" in name for name in functions)
    assert any("store.py" in name for name in functions)
    assert len(report["machine"]["load_average"]) == 3
