"""`chargepin lab report`: the tables and the plot of docs/SECURITY.md, from fresh trials.

Runs the passkey-bits and guess attacks against both profiles, then derives what the trials
cannot reach (years of lockouts) with `analysis`, after checking the model against the trials:
the simulated time the lockout model predicts for a trial's attempts must match the time the
real daemon made the attacker wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chargepin.core.errors import format_duration
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.lab.attacks import guess, passkey_bits
from chargepin.lab.attacks.analysis import (
    HORIZONS,
    STRONG_PINS,
    Schedule,
    attempts_for_probability,
    empirical_probability,
    p_independent,
    p_without_repeats,
    schedule,
)
from chargepin.lab.attacks.common import median
from chargepin.lab.bench import machine_info

PLOT_YEARS = 1000.0
"""The plot's time axis runs from one minute to this many years."""


def model_check(report: dict[str, Any], plan: Schedule) -> float:
    """Largest relative gap between measured and modelled attacker time over the trials."""
    worst = 0.0
    for trial in report["trials"]:
        served = trial["failed_attempts"] + (1 if trial["recovered"] else 0)
        if served < 2 or trial["simulated_seconds"] <= 0:
            continue
        modelled = plan.seconds_for(served)
        worst = max(worst, abs(trial["simulated_seconds"] - modelled) / modelled)
    return worst


def _time(seconds: float) -> str:
    days = seconds / 86400
    if days >= 2 * 365:
        return f"{days / 365:,.0f} years"
    return f"{days:,.0f} days" if days >= 2 else format_duration(seconds)


def profile_rows(
    profile: ProfileName, bits: dict[str, Any], plan: Schedule
) -> list[dict[str, Any]]:
    """The table rows of one profile: passkey bits and plain guessing."""
    rows = []
    if not PROFILES[profile].rotate_on_failure:  # the PIN stays: the bits measured add up
        times = [t["simulated_seconds"] for t in bits["trials"] if t["recovered"]]
        attempts = [float(t["failed_attempts"] + 1) for t in bits["trials"] if t["recovered"]]
        rows.append(
            {
                "attack": "passkey-bits",
                "source": f"measured ({len(bits['trials'])} trials)",
                "attempts_median": median(attempts),
                "attempts_worst": max(attempts, default=float("nan")),
                "seconds_median": median(times),
                "seconds_worst": max(times, default=float("nan")),
                "probability": {
                    label: empirical_probability(times, len(bits["trials"]), seconds)
                    for label, seconds in HORIZONS.items()
                },
            }
        )
        half, everything = STRONG_PINS / 2, float(STRONG_PINS)
        rows.append(
            {
                "attack": "guess",
                "source": "derived (fixed PIN, no repeated guesses)",
                "attempts_median": half,
                "attempts_worst": everything,
                "seconds_median": plan.seconds_for(round(half)),
                "seconds_worst": plan.seconds_for(STRONG_PINS),
                "probability": {
                    label: p_without_repeats(plan.attempts_by(seconds))
                    for label, seconds in HORIZONS.items()
                },
            }
        )
        return rows
    half, almost = attempts_for_probability(0.5), attempts_for_probability(0.99)
    for attack in ("passkey-bits", "guess"):
        rows.append(
            {
                "attack": attack,
                "source": "derived (fresh PIN each attempt); worst = 99th percentile",
                "attempts_median": half,
                "attempts_worst": almost,  # 99th percentile: there is no worst case
                "seconds_median": plan.seconds_for(round(half)),
                "seconds_worst": plan.seconds_for(round(almost)),
                "probability": {
                    label: p_independent(plan.attempts_by(seconds))
                    for label, seconds in HORIZONS.items()
                },
            }
        )
    return rows


def plot(path: Path, curves: dict[str, list[tuple[float, float]]]) -> None:
    """Probability of recovery against attacker time (log scale), one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, points in curves.items():
        xs = [seconds / 86400 for seconds, _ in points]
        ys = [probability for _, probability in points]
        if "measured" in label:  # the share of trials: a step at each trial's recovery
            axes.step(xs, ys, where="post", label=label)
        else:
            axes.plot(xs, ys, label=label)
    axes.set_xscale("log")
    axes.set_xlim(1 / 1440, PLOT_YEARS * 365)
    axes.set_ylim(0, 1.02)
    for label, seconds in {"1 hour": 3600, **HORIZONS, "100 years": 100 * 365 * 86400}.items():
        axes.axvline(seconds / 86400, color="0.85", linewidth=0.8, zorder=0)
        axes.text(seconds / 86400, 1.03, label, fontsize=7, ha="center", color="0.4")
    axes.set_xlabel("attacker time in radio range (days, log scale)")
    axes.set_ylabel("probability the PIN is recovered")
    axes.legend(loc="center right", fontsize=8)
    axes.grid(True, which="major", axis="y", color="0.9")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def curve_points(
    profile: ProfileName, bits: dict[str, Any], plan: Schedule, guessing: bool
) -> list[tuple[float, float]]:
    """Points of one plot line, from a minute to PLOT_YEARS."""
    points: list[tuple[float, float]] = []
    seconds = 60.0
    fixed_pin = not PROFILES[profile].rotate_on_failure
    while seconds <= PLOT_YEARS * 365 * 86400:
        if fixed_pin and not guessing:
            times = [t["simulated_seconds"] for t in bits["trials"] if t["recovered"]]
            probability = empirical_probability(times, len(bits["trials"]), seconds)
        elif fixed_pin:
            probability = p_without_repeats(plan.attempts_by(seconds))
        else:
            probability = p_independent(plan.attempts_by(seconds))
        points.append((seconds, probability))
        seconds *= 1.05
    return points


async def gather(trials: int, seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for profile in ProfileName:
        bits = await passkey_bits.run(profile, trials, seed)
        guessed = await guess.run(profile, max(1, trials // 2), seed + 1)
        results[profile] = {"passkey-bits": bits, "guess": guessed}
    return results


def run_report(trials: int, seed: int, json_path: Path | None, plot_path: Path | None) -> int:
    """0 when classic was broken and hardened held, 1 otherwise."""
    measured = asyncio.run(gather(trials, seed))
    console = Console()
    out: dict[str, Any] = {
        "command": f"chargepin lab report --trials {trials} --seed {seed}"
        + (f" --json {json_path}" if json_path else "")
        + (f" --plot {plot_path}" if plot_path else ""),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(Path(tempfile.gettempdir())),
        "profiles": {},
    }
    curves: dict[str, list[tuple[float, float]]] = {}
    as_expected = True
    for profile in ProfileName:
        bits = measured[profile]["passkey-bits"]
        guessed = measured[profile]["guess"]
        as_expected &= bits["as_expected"] and guessed["as_expected"]
        per_attempt = median(
            [a["seconds"] for t in bits["trials"] for a in t["attempts"] if a["passkey"]]
        )
        plan = schedule(PROFILES[profile].lockout, per_attempt)
        rows = profile_rows(profile, bits, plan)
        gap = model_check(bits, plan)
        out["profiles"][profile] = {
            "attempt_seconds": per_attempt,
            "attempts_per_day_steady": round(plan.steady_rate() * 86400, 1),
            "model_gap": round(gap, 4),
            "rows": rows,
            "passkey_bits": bits,
            "guess": guessed,
        }
        table = Table(title=f"{profile} profile: recovering the PIN")
        for column in ("attack", "attempts median / worst", "time median / worst", *HORIZONS):
            table.add_column(column)
        table.add_column("source")
        for row in rows:
            table.add_row(
                row["attack"],
                f"{row['attempts_median']:,.0f} / {row['attempts_worst']:,.0f}",
                f"{_time(row['seconds_median'])} / {_time(row['seconds_worst'])}",
                *(f"{row['probability'][label]:.3g}" for label in HORIZONS),
                row["source"],
            )
        console.print(table)
        console.print(
            f"{profile}: {per_attempt * 1000:.0f} ms per attempt on the virtual radio, "
            f"{plan.steady_rate() * 86400:,.0f} attempts a day once lockouts settle; "
            f"the lockout model is within {gap:.1%} of the measured attacker time"
        )
        if not PROFILES[profile].rotate_on_failure:
            curves[f"{profile}: passkey bits (measured)"] = curve_points(profile, bits, plan, False)
            curves[f"{profile}: plain guessing (derived)"] = curve_points(profile, bits, plan, True)
        else:
            curves[f"{profile}: any strategy (derived)"] = curve_points(profile, bits, plan, False)
    out["as_expected"] = as_expected
    if plot_path is not None:
        plot(
            plot_path,
            {
                name.replace("hardened: passkey bits", "hardened: any strategy"): c
                for name, c in curves.items()
            },
        )
        console.print(f"plot written to {plot_path}")
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=1) + "\n")
        console.print(f"report written to {json_path}")
    return 0 if as_expected else 1
