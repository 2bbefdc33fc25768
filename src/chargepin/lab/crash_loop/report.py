"""The crash loop's report: one record per iteration, the totals, the table, the command line.

The JSON report (`--json`) holds the records and the totals; the table shows the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from chargepin.core import lockout
from chargepin.core.profiles import DEFAULT_PROFILE, PROFILES
from chargepin.lab.crash_loop.oracle import FORGET_BONDS, StateCheck
from chargepin.lab.crash_loop.workload import AFTER_WORKLOAD, Chain, Killer, KillMoment, Step
from chargepin.lab.security_state import SecurityState

PROFILE = DEFAULT_PROFILE
"""The shipped profile: each failure moves the epoch; 5 failures / 60 s lock 300 s, doubling."""

KILL, POWER_CUT = "kill-9", "power-cut"
"""The report's `mode`: a crash of the daemon, or a power cut (only fsynced writes kept)."""


def state_record(state: SecurityState) -> dict[str, Any]:
    """The parts of a state file that must never go backwards across a kill."""
    return {
        "failures": state.failures,
        "locks": state.locks,
        "epoch": state.epoch,
        "locked_until": state.lockout.locked_until,
        "bonds": len(state.bonds),
        "pin_changes": state.pin_changes,
        "bond_removals": state.bond_removals,
    }


def owner_records(killer: Killer, check: StateCheck) -> list[dict[str, Any]]:
    """The owner tickets the workload wrote, and whether the file has those the kill cut off."""
    applied = iter(check.owner_applied)
    return [
        {
            "action": change.action,
            "acknowledged": change.acknowledged,
            "interrupted": change.interrupted,
            "receipt_s": change.receipt_s,
            **({"bonds": len(change.forgotten)} if change.action == FORGET_BONDS else {}),
            "applied": next(applied, None) if change.interrupted else change.acknowledged or None,
        }
        for change in killer.witness.owner_changes
    ]


def iteration_record(
    index: int,
    chain: Chain,
    plan: list[Step],
    killer: Killer,
    delay: float,
    timing: dict[str, float],
    steps_done: int,
    before: SecurityState,
    check: StateCheck,
) -> dict[str, Any]:
    """What one iteration planned, where the kill landed, what the phones saw and the file kept
    (the restart's measurements and the violations are added by the loop)."""
    moment, witness, after = killer.moment, killer.witness, check.after
    return {
        "iteration": index,
        "charger": chain.serial,
        "plan": [str(step) for step in plan],
        "kill_moment": str(moment),
        "kill_delay_s": round(delay, 3) if moment is KillMoment.RANDOM else None,
        "kill_target": None if moment is KillMoment.RANDOM else killer.target,
        "killed": killer.how,
        **timing,
        "steps_done": steps_done,
        "during_pairing": killer.during_pairing,
        "during_lockout": after is not None
        and lockout.is_locked(PROFILES[PROFILE].lockout, after.lockout, killer.killed_at),
        "seen": {
            "wrong_pins": witness.wrong_pins,
            "locked_refusals": len(witness.locked_refusals),
            "confirmed_bonds": sum(v is not None for v in witness.bond_changes.values()),
        },
        "before": state_record(before),
        "after": None if after is None else state_record(after),
        "failures_recorded": None if after is None else after.failures - before.failures,
        "failures_observed": witness.wrong_pins,
        "bonds_checked": check.bonds_checked,
        "confirmed_bonds_checked": len(chain.confirmed),
        "anomalies": witness.anomalies,
        "successes_lost": list(check.successes_lost),
        "successes_synced": check.successes_synced,
        "owner_tickets": owner_records(killer, check),
        "bonds_forgotten": list(check.bonds_forgotten),
    }


@dataclass
class Totals:
    """Sums over the iterations, for the table and the JSON report."""

    iterations: int = 0
    chargers: int = 0
    kills_during_pairing: int = 0
    kills_at_refusal: int = 0
    kills_at_bonded: int = 0
    kills_at_ticket: int = 0
    kills_at_receipt: int = 0
    kills_during_lockout: int = 0
    kills_idle: int = 0
    bonds_checked: int = 0
    confirmed_bonds_checked: int = 0
    failures_recorded: int = 0
    failures_observed: int = 0
    locked_refusals_observed: int = 0
    locks_checked_after_restart: int = 0
    reconnects_tried: int = 0
    reconnects_ok: int = 0
    unconfirmed_bonds_lost: int = 0
    successes_lost: int = 0
    successes_synced: int = 0
    cuts_that_lost_writes: int = 0
    paired_again: int = 0
    owner_tickets: int = 0
    revocations: int = 0
    pin_changes: int = 0
    forget_bonds: int = 0
    bonds_forgotten: int = 0
    """Bonds deleted by forget_bonds tickets the owner acknowledged or the file holds."""
    owner_acknowledged: int = 0
    owner_interrupted: int = 0
    owner_interrupted_applied: int = 0
    revoked_refused_after_restart: int = 0
    restarts_ok: int = 0
    anomalies: int = 0
    violations: int = 0

    def add(self, record: dict[str, Any], triggered: bool) -> None:
        """Count one iteration's record; `triggered`: the kill came with its chosen event."""
        moment = KillMoment(record["kill_moment"])
        self.iterations += 1
        self.kills_during_pairing += record["during_pairing"]
        self.kills_at_refusal += triggered and moment is KillMoment.REFUSAL
        self.kills_at_bonded += triggered and moment is KillMoment.BONDED
        self.kills_at_ticket += triggered and moment is KillMoment.TICKET
        self.kills_at_receipt += triggered and moment is KillMoment.RECEIPT
        self.kills_during_lockout += bool(record["during_lockout"])
        self.kills_idle += record["killed"] == AFTER_WORKLOAD
        self.bonds_checked += record["bonds_checked"]
        self.confirmed_bonds_checked += record["confirmed_bonds_checked"]
        self.failures_recorded += record["failures_recorded"] or 0
        self.failures_observed += record["failures_observed"]
        self.locked_refusals_observed += record["seen"]["locked_refusals"]
        self.locks_checked_after_restart += record.get("lock_after_restart") == "refused"
        reconnects = record.get("reconnects", [])
        self.reconnects_tried += len(reconnects)
        self.reconnects_ok += sum(r["ok"] for r in reconnects)
        self.unconfirmed_bonds_lost += sum(not r["ok"] and not r["confirmed"] for r in reconnects)
        self.successes_lost += len(record["successes_lost"])
        self.successes_synced += record["successes_synced"]
        self.paired_again += sum(r.get("paired_again") == "ok" for r in reconnects)
        self.restarts_ok += record.get("restart_s") is not None
        tickets = record["owner_tickets"]
        self.owner_tickets += len(tickets)
        self.revocations += sum(t["action"] == "remove_phone" for t in tickets)
        self.pin_changes += sum(t["action"] == "change_pin" for t in tickets)
        self.forget_bonds += sum(t["action"] == FORGET_BONDS for t in tickets)
        self.bonds_forgotten += len(record.get("bonds_forgotten", []))
        self.owner_acknowledged += sum(t["acknowledged"] for t in tickets)
        self.owner_interrupted += sum(t["interrupted"] for t in tickets)
        self.owner_interrupted_applied += sum(
            bool(t["interrupted"] and t["applied"]) for t in tickets
        )
        self.revoked_refused_after_restart += sum(record.get("revoked_refused", []))
        self.anomalies += len(record["anomalies"])
        self.violations += len(record["violations"])


def command_line(
    iterations: int, seed: int, json_path: Path | None, power_cut: bool = False
) -> str:
    """The CLI command that reproduces a run with these settings."""
    mode = " --power-cut" if power_cut else ""
    parts = [f"chargepin lab crash-loop{mode} --iterations {iterations} --seed {seed}"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    return " ".join(parts)


def summary_table(report: dict[str, Any]) -> Table:
    totals = report["totals"]
    title = f"chargepin lab crash-loop ({report['mode']}, seed {report['seed']}, {PROFILE} profile)"
    table = Table(title=title)
    table.add_column("measurement")
    table.add_column("value", justify="right")
    rows = [
        (f"iterations ({report['mode']}, check, restart)", totals["iterations"]),
        ("chargers (state files)", totals["chargers"]),
        ("kills during a pairing", totals["kills_during_pairing"]),
        ("  as the phone saw its refusal", totals["kills_at_refusal"]),
        ("  as the phone finished pairing", totals["kills_at_bonded"]),
        ("kills just after an owner ticket went out", totals["kills_at_ticket"]),
        ("kills as the owner got its receipt", totals["kills_at_receipt"]),
        ("kills during a lockout", totals["kills_during_lockout"]),
        ("kills after the workload (idle)", totals["kills_idle"]),
        ("bonds checked (rows after kills)", totals["bonds_checked"]),
        ("confirmed bonds checked", totals["confirmed_bonds_checked"]),
        (
            "failures recorded / observed",
            f"{totals['failures_recorded']} / {totals['failures_observed']}",
        ),
        ("lock refusals observed", totals["locked_refusals_observed"]),
        ("locks refusing after restart", totals["locks_checked_after_restart"]),
        (
            "bonded reconnects after restart ok / tried",
            f"{totals['reconnects_ok']} / {totals['reconnects_tried']}",
        ),
        ("  unconfirmed bonds lost (allowed)", totals["unconfirmed_bonds_lost"]),
        ("  phones that paired again after the loss", totals["paired_again"]),
        ("power cuts that took back unsynced writes", totals["cuts_that_lost_writes"]),
        ("confirmed successes a power cut took back (allowed)", totals["successes_lost"]),
        ("confirmed successes a later refusal synced (kept)", totals["successes_synced"]),
        (
            "owner tickets (revoke + PIN change + forget_bonds)",
            f"{totals['owner_tickets']} ({totals['revocations']} + {totals['pin_changes']} + "
            f"{totals['forget_bonds']})",
        ),
        (
            "  bonds deleted by forget_bonds (acked or applied)",
            totals["bonds_forgotten"],
        ),
        ("  acknowledged (receipt read): all on disk", totals["owner_acknowledged"]),
        (
            "  cut off before the receipt: applied / all (whole either way)",
            f"{totals['owner_interrupted_applied']} / {totals['owner_interrupted']}",
        ),
        ("revoked phones refused after restart", totals["revoked_refused_after_restart"]),
        ("restarts serving", totals["restarts_ok"]),
        ("anomalies (phone errors, daemon alive)", totals["anomalies"]),
        ("violations", totals["violations"]),
    ]
    power_cut_only = {
        "power cuts that took back unsynced writes",
        "confirmed successes a power cut took back (allowed)",
        "confirmed successes a later refusal synced (kept)",
    }
    for label, value in rows:
        if report["mode"] == POWER_CUT or label not in power_cut_only:
            table.add_row(label, str(value))
    verdict = "pass" if report["pass"] else "FAIL"
    table.add_row("[bold]verdict[/bold]", f"[bold]{verdict}[/bold]")
    table.caption = f"{report['wall_seconds']} s"
    return table
