"""`chargepin bench pairing` end to end with tiny round counts: the report's shape, never its times.

Times on a shared machine are noise; what must hold is that every measurement ran (real
pairings through the daemon and through bare Bumble, a daemon child whose RSS was read) and that
the JSON carries what docs/PERFORMANCE.md promises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chargepin.lab.bench import RATIO_TARGET, Summary, percentile, run_pairing_bench

SUMMARY_KEYS = {"median", "p90", "n", "min", "max"}


def assert_summary(summary: dict[str, Any], n: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["n"] == n
    assert 0 < summary["min"] <= summary["median"] <= summary["p90"] <= summary["max"]


def test_percentile_is_a_measured_value() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    assert percentile(samples, 0.9) == 9.0
    assert percentile(samples, 0.5) == 5.0
    assert percentile([3.0], 0.9) == 3.0
    assert Summary.of(samples).to_dict() == {
        "median": 5.5,
        "p90": 9.0,
        "n": 10,
        "min": 1.0,
        "max": 10.0,
    }
    with pytest.raises(ValueError):
        percentile([], 0.9)


def test_bench_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_path = tmp_path / "bench.json"

    code = run_pairing_bench(report_path, rounds=3, rss_pairings=3)

    report = json.loads(report_path.read_text())
    pairing = report["pairing"]
    assert code == (0 if pairing["pass"] else 1)
    assert report["command"] == (
        f"chargepin bench pairing --json {report_path} --rounds 3 --rss-pairings 3"
    )
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python"].startswith("3.")
    assert machine["bumble"]

    for key in ("chargepin_ms", "bare_bumble_ms", "chargepin_scan_ms", "chargepin_connect_ms"):
        assert_summary(pairing[key], 3)
    assert len(pairing["samples_ms"]["chargepin"]) == len(pairing["samples_ms"]["bare_bumble"]) == 3
    assert pairing["ratio_median"] > 0 and pairing["ratio_paired_median"] > 0
    assert pairing["target"] == RATIO_TARGET
    assert pairing["pass"] == (pairing["ratio_median"] <= RATIO_TARGET)
    # Phone.connect contains the pairing it timed.
    assert pairing["chargepin_connect_ms"]["min"] > pairing["chargepin_ms"]["min"]

    for key in (
        "connect_to_read",
        "chargepin",
        "scan",
        "scan_connect_read",
        "link",
        "encrypt",
        "bare_bumble_link",
        "bare_bumble_encrypt",
    ):
        assert_summary(report["bonded_reconnect_ms"][key], 3)

    rss = report["rss"]
    assert rss["pairings"] == 3
    assert [sample["pairings"] for sample in rss["samples"]] == [0, 3]
    assert all(sample["rss_kib"] > 0 for sample in rss["samples"])
    assert rss["growth_kib"] == rss["end_kib"] - rss["start_kib"]
    assert_summary(rss["pairing_ms"], 3)

    table = capsys.readouterr().out
    assert "bare Bumble" in table and "RSS" in table


def test_bench_refuses_zero_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_pairing_bench(None, rounds=0, rss_pairings=1) == 2
    assert "at least 1" in capsys.readouterr().out


def test_bench_without_memory_run(tmp_path: Path) -> None:
    """`--rss-pairings 0` skips the daemon child; the pairing numbers are still all there."""
    report_path = tmp_path / "bench.json"
    run_pairing_bench(report_path, rounds=1, rss_pairings=0)
    report = json.loads(report_path.read_text())
    assert report["rss"] is None
    assert report["growth"] is None
    assert_summary(report["pairing"]["chargepin_ms"], 1)


def test_bench_growth_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--bonds 1,4`: each point's pairings interleaved with bare Bumble's, and the PNG."""
    report_path, plot = tmp_path / "bench.json", tmp_path / "growth.png"

    run_pairing_bench(report_path, rounds=2, rss_pairings=0, bonds=(1, 4), plot=plot)

    report = json.loads(report_path.read_text())
    assert report["command"].endswith("--rss-pairings 0 --bonds 1,4")
    assert [point["bonds"] for point in report["growth"]] == [1, 4]
    for point in report["growth"]:
        assert_summary(point["chargepin_ms"], 2)
        assert_summary(point["bare_bumble_ms"], 2)
        assert point["ratio_median"] > 0 and point["ratio_paired_median"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "with 4 bonds" in capsys.readouterr().out


def test_bench_refuses_a_bad_growth_series(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_pairing_bench(None, rounds=1, rss_pairings=0, bonds=(10, 1)) == 2
    assert "increasing" in capsys.readouterr().out
