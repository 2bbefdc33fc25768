"""`chargepin lab attack revoked-user` (issue 9, point 1), through the real fleet API and the
real daemon: a member harvests what the API gives, is revoked and tries every way back in."""

from __future__ import annotations

from typing import Any

import pytest

from chargepin.core.profiles import ProfileName
from chargepin.lab.attacks import revoked_user


def _ways(run: dict[str, Any]) -> dict[str, bool]:
    got: dict[str, bool] = {}
    for way in run["ways"]:
        got[way["name"]] = got.get(way["name"], False) or way["got_in"]
    return got


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(ProfileName))
async def test_a_revoked_member_who_harvested_pins_gets_nothing_back_after_the_rekey(
    profile: ProfileName,
) -> None:
    report = await revoked_user.run(profile, trials=1, seed=3)
    assert report["as_expected"], report["verdict"]
    rekeyed, kept = report["runs"]
    assert rekeyed["rekeyed"] and not kept["rekeyed"]
    # The harvest: the PIN the charger attested, never one ahead of it.
    assert rekeyed["pins_ahead_given"] == kept["pins_ahead_given"] == 0
    assert rekeyed["ahead_answer"] == "409 epoch_not_attested"
    assert rekeyed["harvested_pins"] == 1
    # Re-keyed: every way back in fails, and the member who stays is served with the new PIN.
    assert rekeyed["generation_after"] == 1 and kept["generation_after"] == 0
    assert not any(_ways(rekeyed).values()), rekeyed["ways"]
    assert rekeyed["locked_for_replay"] and rekeyed["remaining_member_ok"]
    # Not re-keyed: the fleet and the old bond stay shut, but the harvested PIN still pairs;
    # a hardened charger's rotation (a wrong PIN) ends that, a classic one's does not.
    kept_ways = _ways(kept)
    assert kept_ways["harvested PIN"]
    assert kept_ways["harvested PIN after it"] is (profile is ProfileName.CLASSIC)
    for name in ("fleet: Charger Info", "fleet: PIN of the epoch", "old bond"):
        assert not kept_ways[name]
    assert not kept_ways["harvested admission ticket while locked"]


def test_the_table_has_a_row_per_way_and_profile_state() -> None:
    run = {
        "rekeyed": True,
        "pins_ahead_given": 0,
        "harvested_pins": 1,
        "remaining_member_ok": True,
        "ways": [{"name": "old bond", "got_in": False, "answer": "PinNeeded"}],
    }
    rows = dict(
        revoked_user.summary({"runs": [run, {**run, "rekeyed": False}], "look_ahead_asked": 1000})
    )
    assert rows["re-keyed: old bond"] == "got in 0 / 1"
    assert rows["not re-keyed: remaining member served"] == "1 / 1"
