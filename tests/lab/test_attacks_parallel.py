"""`chargepin lab attack parallel`, short: 8 concurrent attackers get no more than 5 passkey
attempts served per minute of charger time, in both profiles, seen from both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.core.profiles import PROFILES
from chargepin.lab.attacks import parallel


def test_max_in_window_counts_a_half_open_window() -> None:
    assert parallel.max_in_window([], 60.0) == 0
    assert parallel.max_in_window([0.0, 0.0, 0.0], 60.0) == 3
    assert parallel.max_in_window([0.0, 59.9, 60.0, 119.9], 60.0) == 2
    assert parallel.max_in_window([30.0, 0.0, 10.0, 200.0, 20.0, 50.0, 59.0], 60.0) == 6


@pytest.mark.parametrize("profile", ["classic", "hardened"])
async def test_concurrent_attackers_stay_within_the_lockout_bound(profile: str) -> None:
    report = await parallel.run(profile, trials=1, seed=5, hours=0.5)
    assert report["as_expected"], report["verdict"]
    config = PROFILES[profile].lockout
    s = report["summary"]
    [trial] = report["trials"]
    assert 0 < s["served_max_in_window"] <= config.failures
    assert 0 < s["daemon_served_max_in_window"] <= config.failures
    # What the attackers saw being served is what the charger logged, attempt for attempt.
    assert trial["served"] == trial["daemon_served"]
    assert s["paired"] == 0
    # The limit was reached (the attack pressed hard enough) and refusals were handed out.
    assert s["lockouts"] >= 3
    assert s["refused_locked"] > 0
    assert trial["simulated_seconds"] == pytest.approx(1800, abs=1)
    if profile == "hardened":
        assert trial["lock_durations"][:3] == [300.0, 600.0, 1200.0]
    else:
        assert set(trial["lock_durations"]) == {300.0}
    rows = dict(parallel.summary(report))
    assert rows["pairings made"] == "0"


def test_cli_runs_the_attack_and_writes_its_json(tmp_path: Path) -> None:
    path = tmp_path / "parallel.json"
    result = CliRunner().invoke(
        app, ["lab", "attack", "parallel", "--trials", "1", "--seed", "3", "--json", str(path)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["attack"] == "parallel"
    assert report["profile"] == "hardened"
    assert report["as_expected"] is True
    assert report["command"].startswith("chargepin lab attack parallel --profile hardened")
    assert len(report["trials"]) == 1
    assert report["summary"]["served_max_in_window"] <= 5
    assert "verdict" in result.output
