"""`chargepin lab ...`: the security lab (docs/SECURITY.md). Attacks against the real daemon on
the virtual radio, fuzzing of every byte-level input, and the kill -9 crash loop.

Each command prints a table, writes its measurements as JSON with `--json`, and exits 0 when the
charger held (or, for the classic profile's attacks, when the measurement matched what
docs/SECURITY.md says), 1 when it did not, 2 when the lab could not run.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from chargepin.cli_errors import reports_errors

lab_app = typer.Typer(
    help="The security lab: attacks, fuzzing and crash loops, measured (docs/SECURITY.md).",
    no_args_is_help=True,
)
attack_app = typer.Typer(
    help="Attacks on the Bluetooth PIN by a Bumble central against the real charger daemon.",
    no_args_is_help=True,
)
lab_app.add_typer(attack_app, name="attack")


class Profile(StrEnum):
    classic = "classic"
    hardened = "hardened"


ProfileOption = Annotated[
    Profile, typer.Option("--profile", help="The charger's lockout and PIN profile.")
]
TrialsOption = Annotated[int, typer.Option("--trials", min=1, help="Independent trials.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed: the same seed, the same run.")]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Write the measurements to this JSON file.")
]


def _attack(name: str, profile: Profile, trials: int, seed: int, json_path: Path | None) -> None:
    from chargepin.lab.attacks.runner import run_attack

    raise typer.Exit(run_attack(name, profile.value, trials, seed, json_path))


@attack_app.command("passkey-bits")
@reports_errors
def passkey_bits(
    profile: ProfileOption = Profile.hardened,
    trials: TrialsOption = 10,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """The adaptive static-passkey attack: keep the confirmed bits, flip the failing one."""
    _attack("passkey-bits", profile, trials, seed, json_path)


@attack_app.command("guess")
@reports_errors
def guess(
    profile: ProfileOption = Profile.hardened,
    trials: TrialsOption = 10,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """Plain online guessing: one PIN per pairing attempt."""
    _attack("guess", profile, trials, seed, json_path)


@attack_app.command("lockout-dos")
@reports_errors
def lockout_dos(
    profile: ProfileOption = Profile.hardened,
    trials: TrialsOption = 3,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """Keep the charger locked: can a bonded owner and a newly invited phone still get in?"""
    _attack("lockout-dos", profile, trials, seed, json_path)


@attack_app.command("parallel")
@reports_errors
def parallel(
    profile: ProfileOption = Profile.hardened,
    trials: TrialsOption = 3,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """8 attacker connections at once: no more failed attempts per window than the threshold."""
    _attack("parallel", profile, trials, seed, json_path)


@attack_app.command("replay")
@reports_errors
def replay(
    profile: ProfileOption = Profile.hardened,
    trials: TrialsOption = 3,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """Captured tickets replayed, tampered with and moved to another charger."""
    _attack("replay", profile, trials, seed, json_path)


@lab_app.command("fuzz")
@reports_errors
def fuzz(
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.01, help="How long to fuzz, all targets together.")
    ] = 1.0,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """Fuzz every byte-level input (GATT writes, tickets, receipts, stickers, state files)."""
    from chargepin.lab.fuzz import run_fuzz

    raise typer.Exit(run_fuzz(minutes, seed, json_path))


@lab_app.command("crash-loop")
@reports_errors
def crash_loop(
    iterations: Annotated[
        int, typer.Option("--iterations", min=1, help="kill -9 / restart cycles.")
    ] = 100,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
) -> None:
    """kill -9 the daemon at random moments of pairings and lockouts; check the state after."""
    from chargepin.lab.crash_loop import run_crash_loop

    raise typer.Exit(run_crash_loop(iterations, seed, json_path))


@lab_app.command("report")
@reports_errors
def report(
    trials: TrialsOption = 20,
    seed: SeedOption = 1,
    json_path: JsonOption = None,
    plot_path: Annotated[
        Path | None,
        typer.Option("--plot", help="Write the recovery-probability plot to this PNG file."),
    ] = None,
) -> None:
    """The tables of docs/SECURITY.md: both attacks on PINs, both profiles, days to years."""
    from chargepin.lab.attacks.report import run_report

    raise typer.Exit(run_report(trials, seed, json_path, plot_path))
