"""`chargepin lab attack lockout-dos`, short: an attacker keeps the charger locked for an hour
of charger time. The bonded owner gets in at once under `hardened`; under `classic` only with
the app's admission ticket. New invited phones are measured: without admission they stay out,
with it they pair at once (DECISIONS.md, "A member's new phone is admitted past a lockout")."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.lab.attacks import lockout_dos


async def test_hardened_serves_the_bonded_owner_at_once_while_locked() -> None:
    report = await lockout_dos.run("hardened", trials=1, seed=4, hours=1.0)
    assert report["as_expected"], report["verdict"]
    s = report["summary"]
    [trial] = report["trials"]
    assert s["trials_lockout_broken"] == 0
    assert trial["locked_share"] > 0.99  # the attack works: the charger is locked all along
    assert trial["lock_durations"] == [300.0, 600.0, 1200.0, 2400.0]
    for owner in (s["owner"], s["owner_app"]):
        assert owner["tries_while_locked"] >= 1
        assert owner["served_while_locked"] == owner["tries_while_locked"]
        assert owner["served_at_first_try"] == owner["visits"]
        assert owner["wait_max"] == 0.0
    # A new pairing is refused while locked unless a member's admission ticket lets it in.
    assert s["invited"]["served_while_locked"] == 0
    assert "locked" in s["invited"]["outcomes"]
    assert s["invited_app"]["served_at_first_try"] == 1
    assert "bonded owner served at once" in report["verdict"]


async def test_classic_locks_the_bonded_owner_out_unless_admitted() -> None:
    report = await lockout_dos.run("classic", trials=1, seed=4, hours=1.0)
    assert report["as_expected"], report["verdict"]
    s = report["summary"]
    [trial] = report["trials"]
    assert trial["lockouts"] >= 11
    assert set(trial["lock_durations"]) == {300.0}  # classic never grows
    assert trial["attacker_failures"] == 5 * trial["lockouts"]
    assert s["owner"]["tries_while_locked"] >= 1
    assert s["owner"]["served_while_locked"] == 0
    assert s["owner"]["wait_max"] > 0
    assert s["owner_app"]["served_while_locked"] == s["owner_app"]["tries_while_locked"] >= 1
    assert s["invited"]["served_while_locked"] == 0
    assert s["invited_app"]["served_at_first_try"] == 1
    assert "locked out as documented for classic" in report["verdict"]


def test_cli_exit_code_follows_as_expected(tmp_path: Path) -> None:
    path = tmp_path / "dos.json"
    args = ["lab", "attack", "lockout-dos", "--profile", "hardened", "--trials", "1"]
    result = CliRunner().invoke(app, [*args, "--json", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["attack"] == "lockout-dos"
    assert report["as_expected"] is True
    assert report["trials"][0]["owner_as_expected"] is True
