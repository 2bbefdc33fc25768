"""`chargepin bench reconnect` at a tiny size: the report's shape and sanity, never its times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargepin.lab.bench import BenchError
from chargepin.lab.bench_reconnect import TARGET_MS, run_bench, run_reconnect_bench
from tests.lab.test_bench import assert_summary

MEASURED = ("chargepin", "chargepin_cpu", "connect_to_read", "link", "encrypt")


def test_bench_reconnect_writes_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "reconnect.json"

    png_path = tmp_path / "reconnect.png"
    code = run_reconnect_bench(report_path, rounds=2, bond_counts=(1, 3), png_path=png_path)

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1)
    assert (
        report["command"]
        == f"chargepin bench reconnect --json {report_path} --rounds 2 --bonds 1,3"
    )
    assert report["target_ms"] == TARGET_MS
    assert [point["bonds"] for point in report["series"]] == [1, 3]
    for point in report["series"]:
        for name in MEASURED:
            assert_summary(point[name], 2)
        assert len(point["chargepin_samples_ms"]) == 2
        assert point["pass"] == (point["chargepin"]["median"] <= TARGET_MS)
        # chargepin's part is what is left of the window once the link and encryption are out.
        assert point["chargepin"]["median"] < point["connect_to_read"]["median"]
    assert report["pass"] == all(point["pass"] for point in report["series"])
    for name in MEASURED:
        assert_summary(report["rediscovery"][name], 2)
    assert report["rediscovery"]["bonds"] == 1
    for name in ("link", "encrypt"):
        assert_summary(report["bare_bumble"][name], 2)
    assert report["flatness"] >= 1.0
    assert len(report["load_average_end"]) == 3
    assert "chargepin part" in capsys.readouterr().out
    assert png_path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("counts", [(), (10, 1), (0, 1), (1, 1)])
async def test_bench_reconnect_refuses_bond_counts_it_cannot_series(
    tmp_path: Path, counts: tuple[int, ...]
) -> None:
    with pytest.raises(BenchError, match="--bonds"):
        await run_bench(tmp_path, 2, counts)
