"""`chargepin lab attack passkey-bits`: the adaptive static-passkey attack (see `online`).

Expected (docs/SECURITY.md): classic recovers every PIN in about 10 failed attempts, at most
20, so its 5-per-minute lockout only buys minutes; hardened moves to a fresh PIN after every
failed attempt, so the bits learnt are worthless and no trial recovers the PIN.
"""

from __future__ import annotations

from typing import Any

from chargepin.core.errors import format_duration
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.lab.attacks.online import PASSKEY_BITS, BitStrategy, run_trials

NAME = "passkey-bits"


async def run(profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    done, summary = await run_trials(NAME, profile, trials, seed, BitStrategy)
    if not PROFILES[profile].rotate_on_failure:
        as_expected = summary["recovered"] == trials and all(
            t.failed_attempts <= PASSKEY_BITS for t in done
        )
        verdict = (
            f"PIN recovered in {summary['recovered']}/{trials} trials, median "
            f"{summary['failed_attempts_median']:g} failed attempts: classic is broken, as known"
            if as_expected
            else "classic was NOT broken as expected: check the lab or the charger"
        )
    else:
        as_expected = summary["recovered"] == 0
        verdict = (
            f"PIN not recovered in any of {trials} trials: the charger held"
            if as_expected
            else f"PIN RECOVERED in {summary['recovered']}/{trials} trials: a bug in the charger"
        )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "summary": summary,
        "trials": [t.to_dict(with_attempts=True) for t in done],
        "as_expected": as_expected,
        "verdict": verdict,
    }


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the printed table."""
    s = report["summary"]
    return [
        ("trials", str(s["trials"])),
        ("PIN recovered", f"{s['recovered']} / {s['trials']}"),
        (
            "failed attempts, median / worst",
            f"{s['failed_attempts_median']:g} / {s['failed_attempts_worst']:g}",
        ),
        ("lockouts suffered, median", f"{s['lockouts_median']:g}"),
        (
            "simulated attacker time, median / worst",
            f"{format_duration(s['simulated_seconds_median'])} / "
            f"{format_duration(s['simulated_seconds_worst'])}",
        ),
        ("budget (failed attempts per trial)", str(s["budget_failed_attempts"])),
        (
            "wall time per attempt (virtual radio), median",
            f"{s['seconds_per_attempt_median']:.3f} s",
        ),
    ]
