"""`chargepin lab attack replay`, short: captured member tickets replayed, altered and moved to
another charger are all refused with a reason and change nothing; a replayed admission ticket
never lets a central past the lockout; both chargers keep serving."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.lab.attacks import replay


def test_variants_flip_single_bytes_cut_and_extend() -> None:
    blob = bytes(range(150))
    made = replay.variants(blob, random.Random(1))
    flips = [b for name, b in made if name.startswith("flip@")]
    assert len(flips) == replay.FLIPS
    for altered in flips:
        assert len(altered) == len(blob)
        assert sum(a != b for a, b in zip(altered, blob, strict=True)) == 1
    assert any(name.startswith("flip@0^") for name, _ in made)  # the version byte
    cuts = [b for name, b in made if name.startswith("cut@")]
    assert len(cuts) == replay.TRUNCATIONS and all(blob.startswith(c) for c in cuts)
    longer = [b for name, b in made if name.startswith("extend+")]
    assert len(longer) == replay.EXTENSIONS and all(b.startswith(blob) for b in longer)


@pytest.mark.parametrize("profile", ["classic", "hardened"])
async def test_every_replay_is_refused_and_changes_nothing(profile: str) -> None:
    report = await replay.run(profile, trials=1, seed=9)
    assert report["as_expected"], report["verdict"]
    [trial] = report["trials"]
    assert trial["accepted"] == 0
    assert trial["changed"] == 0
    assert trial["unchanged_overall"]
    assert trial["refused_cleanly"] == trial["replays"] >= 100
    assert all(trial["serving"].values())
    assert trial["admission_replays"] == trial["admission_replays_then_locked"] >= 15
    kinds = trial["by_kind"]
    # What refuses each kind of replay (docs/PROTOCOL.md, "Opening"), for every ticket taken.
    for ticket in ("list_phones", "remove_phone", "admit_pairing"):
        # An admission ticket is pre-played and replayed late by the unpaired central.
        early, late = (
            ("unpaired", "unpaired") if ticket == "admit_pairing" else ("revoked", "owner")
        )
        for writer in ("owner", "revoked", "unpaired"):
            assert kinds[f"{ticket}: same ({writer})"] == {"challenge": 1}
        assert kinds[f"{ticket}: pre-play ({early})"] == {"challenge": 1}
        assert kinds[f"{ticket}: expired ({late})"] == {"expired": 1}
        for writer in ("revoked", "unpaired"):
            assert kinds[f"{ticket}: other charger ({writer}, other charger)"] == {"foreign": 1}
    altered = [
        c for kind, c in kinds.items() if kind.split(": ")[1].startswith(("flip", "cut", "ext"))
    ]
    assert set().union(*altered) <= {"malformed", "foreign", "tampered"}
    # Every refusal of a ticket the charger opened is counted (ticket_rejected).
    assert trial["counted"] == trial["ticket_refusals"] == trial["replays"]


def test_cli_writes_the_replay_report(tmp_path: Path) -> None:
    path = tmp_path / "replay.json"
    args = ["lab", "attack", "replay", "--profile", "classic", "--trials", "1"]
    result = CliRunner().invoke(app, [*args, "--json", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["attack"] == "replay"
    assert report["profile"] == "classic"
    assert report["summary"]["accepted"] == 0
    assert report["as_expected"] is True
