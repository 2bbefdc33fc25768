"""`chargepin lab attack impersonate`, short: a fake charger learns the PIN from the app's old
pairing path and nothing from the app's path with the presence proof (issue 9 point 8)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargepin.cli import app
from chargepin.lab.attacks import impersonate
from chargepin.lab.attacks.online import PASSKEY_BITS


def test_the_learner_keeps_the_bits_in_order_and_names_the_pin() -> None:
    learner = impersonate.BitLearner(random.Random(1))
    pin = 482_913
    for step in range(PASSKEY_BITS):
        assert learner.guess() & ((1 << step) - 1) == pin & ((1 << step) - 1)
        learner.learn(step, (pin >> step) & 1)
        learner.learn(step + 5, 1)  # out of order: not contiguous knowledge, ignored
    assert learner.known_bits == PASSKEY_BITS
    assert learner.pin is not None and learner.pin.passkey == pin


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["classic", "hardened"])
async def test_before_the_fake_learns_the_pin_after_it_learns_nothing(profile: str) -> None:
    report = await impersonate.run(profile, trials=1, seed=3)
    assert report["as_expected"], report["verdict"]
    s = report["summary"]
    [trial] = report["trials"]
    before, after = trial["before"], trial["after"]
    # Before: every victim attempt gave the fake at least the bit of its failing round.
    assert before["bits_learnt"] == PASSKEY_BITS
    assert all(a["bits_learnt"] >= 1 for a in before["attempts"])
    assert s["before_bits_per_attempt_median"] >= 1
    assert before["pin_known"] and 1 <= before["pin_known_after_attempts"] <= 20
    # The real charger saw none of it (the hardened one did not rotate): the PIN works there.
    assert before["pairs_with_real_charger"]
    # After: not one pairing, not one bit; every attempt refused before the passkey.
    assert after["pairing_requests_seen"] == 0 and after["bits_learnt"] == 0
    assert after["nonces_relayed"] == impersonate.AFTER_ATTEMPTS
    assert {a["outcome"] for a in after["attempts"]} == {"not_this_charger"}
    assert not after["pin_known"]
    # The residual risk, measured (docs/SECURITY.md): a relay that copies the victim's address
    # gets the real charger's proof for it, and the bits leak again.
    residual = trial["residual_address_copying_relay"]
    assert residual["pin_known"] and residual["pairs_with_real_charger"]
    assert s["residual_pin_known"] == 1


def test_cli_writes_the_impersonate_report(tmp_path: Path) -> None:
    path = tmp_path / "impersonate.json"
    args = ["lab", "attack", "impersonate", "--profile", "hardened", "--trials", "1"]
    result = CliRunner().invoke(app, [*args, "--seed", "5", "--json", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["attack"] == "impersonate" and report["profile"] == "hardened"
    assert report["summary"]["after_bits_learnt"] == 0
    assert report["summary"]["before_pin_known"] == 1
    assert report["as_expected"] is True
