"""`chargepin lab attack guess`: plain online guessing, one PIN per pairing attempt.

Expected (docs/SECURITY.md): no trial finds the PIN within its budget in either profile (each
attempt has one chance in about a million); what the trials measure is the cost of an attempt
and the lockouts, from which `lab report` derives the probability of recovery over a day, a
month and a year.
"""

from __future__ import annotations

from typing import Any

from chargepin.core.profiles import ProfileName
from chargepin.lab.attacks import passkey_bits
from chargepin.lab.attacks.online import GuessStrategy, run_trials

NAME = "guess"


async def run(profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    done, summary_ = await run_trials(NAME, profile, trials, seed, GuessStrategy)
    as_expected = summary_["recovered"] == 0
    attempts = sum(t.failed_attempts for t in done)
    verdict = (
        f"no PIN found in {attempts} guesses over {trials} trials, as expected"
        if as_expected
        else f"PIN FOUND in {summary_['recovered']}/{trials} trials by plain guessing: "
        "far likelier than 1 in 10^6 per guess; a bug in the charger's PINs"
    )
    return {
        "attack": NAME,
        "profile": profile,
        "seed": seed,
        "summary": summary_,
        "trials": [t.to_dict() for t in done],
        "as_expected": as_expected,
        "verdict": verdict,
    }


summary = passkey_bits.summary
