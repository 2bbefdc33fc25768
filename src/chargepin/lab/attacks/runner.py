"""`chargepin lab attack NAME`: run an attack, print its table, write its JSON, exit code."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chargepin.core.profiles import ProfileName
from chargepin.lab.bench import machine_info


def command_line(
    name: str, profile: ProfileName, trials: int, seed: int, json_path: Path | None
) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = [f"chargepin lab attack {name} --profile {profile} --trials {trials} --seed {seed}"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    return " ".join(parts)


async def attack_report(name: str, profile: ProfileName, trials: int, seed: int) -> dict[str, Any]:
    """Run attack `name` and return its report (what the CLI writes as JSON)."""
    module = importlib.import_module(f"chargepin.lab.attacks.{name.replace('-', '_')}")
    started = time.perf_counter()
    report: dict[str, Any] = await module.run(profile, trials, seed)
    report["wall_seconds"] = round(time.perf_counter() - started, 2)
    return report


def summary_table(name: str, report: dict[str, Any]) -> Table:
    module = importlib.import_module(f"chargepin.lab.attacks.{name.replace('-', '_')}")
    table = Table(title=f"chargepin lab attack {name} ({report['profile']} profile)")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    for label, value in module.summary(report):
        table.add_row(label, value)
    verdict = report["verdict"]
    table.add_row("[bold]verdict[/bold]", f"[bold]{verdict}[/bold]")
    return table


def run_attack(
    name: str, profile: ProfileName, trials: int, seed: int, json_path: Path | None
) -> int:
    """0 when the charger behaved as docs/SECURITY.md says for this profile, 1 otherwise."""
    report = asyncio.run(attack_report(name, profile, trials, seed))
    report = {
        "command": command_line(name, profile, trials, seed, json_path),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(Path(tempfile.gettempdir())),
        **report,
    }
    Console().print(summary_table(name, report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        Console().print(f"report written to {json_path}")
    return 0 if report["as_expected"] else 1
