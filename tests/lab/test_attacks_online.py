"""The online PIN attacks, short: classic must fall to the passkey-bits attack, hardened must not.

Each trial is a real Bumble central pairing against the real daemon on the virtual radio; the
lockouts are waited out on the charger's virtual clock.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.lab.attacks import analysis, guess, passkey_bits
from chargepin.lab.attacks.common import WRONG_PASSKEY, Attempt
from chargepin.lab.attacks.online import (
    PASSKEY_BITS,
    BitStrategy,
    best_guess,
    residues_below,
)


@given(st.data(), st.integers(0, 6), st.integers(1, 200))
def test_residues_below_counts_like_listing_them(
    data: st.DataObject, bits: int, limit: int
) -> None:
    residue = data.draw(st.integers(0, (1 << bits) - 1))
    expected = sum(1 for x in range(limit) if x % (1 << bits) == residue)
    assert residues_below(residue, bits, limit) == expected


@given(st.integers(1, 999_999), st.integers(0, PASSKEY_BITS), st.integers(0, 2**32))
def test_a_guess_keeps_the_known_bits_and_is_a_passkey(
    pin: int, known_bits: int, seed: int
) -> None:
    known = pin & ((1 << known_bits) - 1)
    guess_ = best_guess(known, known_bits, random.Random(seed))
    assert 1 <= guess_ <= 999_999
    if known:
        assert guess_ & ((1 << known_bits) - 1) == known


def test_a_failure_at_round_r_confirms_r_bits_and_flips_the_next() -> None:
    strategy = BitStrategy(random.Random(1))
    strategy.learn(Attempt(0b1011_0110, 0, WRONG_PASSKEY, 3, 0.01))
    assert (strategy.known, strategy.known_bits) == (0b1110, 4)
    strategy.learn(Attempt(0b1011_0110, 0, WRONG_PASSKEY, 0, 0.01))
    assert (strategy.known, strategy.known_bits) == (0b1, 1)


async def test_classic_falls_to_the_passkey_bits_attack_within_20_failures() -> None:
    report = await passkey_bits.run("classic", trials=2, seed=7)
    assert report["as_expected"], report["verdict"]
    for trial in report["trials"]:
        assert trial["recovered"]
        assert trial["failed_attempts"] <= PASSKEY_BITS
        assert trial["epochs_seen"] == 1  # classic never rotates
    # 5 failures a minute lock for 300 s: the attack costs minutes, never hours.
    assert report["summary"]["simulated_seconds_worst"] < 3600


async def test_hardened_holds_against_the_passkey_bits_attack() -> None:
    report = await passkey_bits.run("hardened", trials=1, seed=7)
    assert report["as_expected"], report["verdict"]
    [trial] = report["trials"]
    assert not trial["recovered"]
    assert trial["failed_attempts"] == 60
    assert trial["epochs_seen"] == 60  # every attempt met a fresh PIN
    assert trial["lockouts"] >= 11


@pytest.mark.parametrize("profile", ["classic", "hardened"])
async def test_plain_guessing_finds_nothing_in_a_short_run(profile: str) -> None:
    report = await guess.run(profile, trials=1, seed=3)
    assert report["as_expected"], report["verdict"]
    assert report["summary"]["failed_attempts_median"] == 60


async def test_the_lockout_model_matches_the_measured_attacker_time() -> None:
    """What `lab report` extrapolates to years must agree with the daemon where both reach."""
    report = await passkey_bits.run("hardened", trials=1, seed=11)
    per_attempt = report["summary"]["seconds_per_attempt_median"]
    plan = analysis.schedule(PROFILES[ProfileName.HARDENED].lockout, per_attempt)
    trial = report["trials"][0]
    modelled = plan.seconds_for(trial["failed_attempts"])
    assert trial["simulated_seconds"] == pytest.approx(modelled, rel=0.02)


def test_derived_probabilities() -> None:
    classic = analysis.schedule(PROFILES[ProfileName.CLASSIC].lockout, 0.025)
    hardened = analysis.schedule(PROFILES[ProfileName.HARDENED].lockout, 0.025)
    assert classic.attempts_by(analysis.DAY) == 1440  # 5 per 300 s lock, all day
    assert hardened.attempts_by(analysis.DAY) < 50
    assert analysis.p_without_repeats(analysis.STRONG_PINS) == 1.0
    assert analysis.p_independent(1) == pytest.approx(1 / analysis.STRONG_PINS)
    half = analysis.attempts_for_probability(0.5)
    assert analysis.p_independent(round(half)) == pytest.approx(0.5, abs=1e-6)
    years = hardened.seconds_for(round(half)) / (365 * analysis.DAY)
    assert years > 10  # "an expected recovery time of years"


def test_the_attack_cli_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "bits.json"
    result = CliRunner().invoke(
        app,
        [
            "lab",
            "attack",
            "passkey-bits",
            "--profile",
            "classic",
            "--trials",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["command"].startswith("chargepin lab attack passkey-bits --profile classic")
    assert report["as_expected"] and report["trials"][0]["recovered"]
    assert "attempts" in report["trials"][0]


@pytest.mark.slow
def test_the_report_cli_writes_tables_and_a_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "report.json", tmp_path / "recovery.png"
    result = CliRunner().invoke(
        app, ["lab", "report", "--trials", "1", "--json", str(out), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.read_text())
    classic, hardened = report["profiles"]["classic"], report["profiles"]["hardened"]
    assert classic["rows"][0]["probability"]["1 day"] == 1.0
    assert hardened["rows"][0]["probability"]["1 year"] < 0.02
    assert hardened["model_gap"] < 0.02
