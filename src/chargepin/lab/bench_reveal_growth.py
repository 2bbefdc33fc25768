"""`chargepin bench reveal-growth`: the PIN reveal's server CPU as the fleet and its audit grow.

Issue 13: the reveal's cost must stay flat from 10^3 to 10^6 chargers and with an audit table
(`pin_reveals`) of 10^7 rows. One database (a SQLite file, or with `--db-url` a throwaway
database on a PostgreSQL server) grows in steps: chargers are provisioned by the factory
(`bench_fleet.provision_chargers`: COPY on PostgreSQL) up to each size, then the audit table is
filled in bulk (one INSERT ... SELECT in the database) up to the audit size. At every step the
real fleet app and the bare FastAPI endpoint are served by uvicorn, each in its own process,
and measured in alternating slices as `chargepin bench fleet` does (`bench_fleet.Arm`); the
figure is the server's CPU per request (psutil), reveal against bare, side by side. The curves
go to a PNG (matplotlib, Agg backend) next to the JSON report.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table
from sqlalchemy import text

from chargepin.core.errors import ChargepinError
from chargepin.fleet import factory
from chargepin.fleet.db import make_engine, transaction
from chargepin.fleet.operations import open_database
from chargepin.fleet.vault import ENV_KEY, Vault
from chargepin.lab import bench_fleet
from chargepin.lab.bench import report_bench
from chargepin.lab.bench_fleet import APP_VERSION, Arm, Server, serve, wait_ready

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_AUDIT_ROWS = 10_000_000
DEFAULT_SECONDS = 2.0
DEFAULT_CONCURRENCY = 8
SLICES = 4

FLAT_TARGET = 1.25
"""Flat: the reveal's CPU per request at the largest step is within 1.25x the smallest's,
each read as a ratio to the bare endpoint measured beside it (the machine's load cancels)."""

AUDIT_BATCH = 1_000_000
"""Audit rows per INSERT ... SELECT: bounds one statement's transaction and progress steps."""


def grow_chargers(db_url: str, vault: Vault, have: int, want: int) -> float:
    """Provision chargers `have`..`want` (the factory, in CHUNKs); the seconds it took."""
    engine, sessions = open_database(db_url)
    try:
        started = time.perf_counter()
        with transaction(sessions) as db:
            for done in range(have, want, bench_fleet.CHUNK):
                factory.provision(
                    db,
                    vault,
                    count=min(bench_fleet.CHUNK, want - done),
                    model=bench_fleet.MODEL,
                    firmware=bench_fleet.FIRMWARE,
                    produced=bench_fleet.PRODUCED,
                )
        return time.perf_counter() - started
    finally:
        engine.dispose()


def fill_audit(db_url: str, rows: int) -> float:
    """Add `rows` audit rows spread over every charger, written by the bench's account, in
    INSERT ... SELECT statements run by the database itself; the seconds it took."""
    engine = make_engine(db_url)
    postgres = db_url.startswith("postgresql")
    series = (
        "generate_series(0, :n - 1) AS s(i)"
        if postgres
        else "(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1)"
        " SELECT i FROM s) AS s"
    )
    statement = text(
        "INSERT INTO pin_reveals (charger_id, user_id, epoch, generation, app_version, at) "
        "SELECT c.first + (s.i % c.count), u.id, 0, 0, :version, :at "
        f"FROM {series}, (SELECT min(id) AS first, count(*) AS count FROM chargers) AS c, "
        "(SELECT min(id) AS id FROM users) AS u"
    )
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).replace(tzinfo=None)
    try:
        started = time.perf_counter()
        for done in range(0, rows, AUDIT_BATCH):
            with engine.begin() as connection:
                n = min(AUDIT_BATCH, rows - done)
                connection.execute(statement, {"n": n, "version": APP_VERSION, "at": at})
        return time.perf_counter() - started
    finally:
        engine.dispose()


async def measure_step(
    reveal: Server,
    bare: Server,
    headers: dict[str, str] | None,
    sticker: str,
    serial: str,
    seconds: float,
    concurrency: int,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One step's figures (and the reveal headers: the first step claims the charger)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=bench_fleet.REQUEST_TIMEOUT) as client:
        await wait_ready(client, reveal, "/openapi.json")
        await wait_ready(client, bare, "/pin")
        if headers is None:
            headers = await bench_fleet.login_and_claim(client, reveal.url, sticker)
        arms = [
            Arm(reveal, f"/chargers/{serial}/pin?epoch=0", headers),
            Arm(bare, "/pin", {"X-App-Version": APP_VERSION}),
        ]
        for arm in arms:
            await arm.slice(client, bench_fleet.WARMUP_S, concurrency)
            arm.latencies_ms.clear()
            arm.seconds = arm.cpu_seconds = 0.0
        for _ in range(SLICES):
            for arm in arms:
                await arm.slice(client, seconds / SLICES, concurrency)
    ours, theirs = (arm.summary() for arm in arms)
    cpu_ratio = ours["server_cpu_ms_per_request"] / max(theirs["server_cpu_ms_per_request"], 1e-9)
    return {"reveal": ours, "bare": theirs, "cpu_ratio": round(cpu_ratio, 3)}, headers


def run_growth(
    directory: Path,
    sizes: tuple[int, ...],
    audit_rows: int,
    seconds: float,
    concurrency: int,
    server_url: str | None,
    command: str = "",
) -> dict[str, Any]:
    """Every step's figures as a JSON-ready dict (and the PNG written under `directory`)."""
    if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
        raise ValueError(f"sizes must be increasing charger counts, got {sizes}")
    if audit_rows < 0:
        raise ValueError(f"audit rows must be 0 or more, got {audit_rows}")
    started = dt.datetime.now(dt.UTC)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": bench_fleet.machine_info(),
        "seconds_per_arm": seconds,
        "concurrency": concurrency,
        "slices_per_arm": SLICES,
        "steps": [],
    }
    with bench_fleet.bench_database(directory, server_url) as db_url:
        report["database"] = bench_fleet.make_engine_name(db_url)
        vault = Vault.generate()
        provision_s, ((serial, sticker),) = bench_fleet.provision_chargers(db_url, vault, sizes[0])
        env = {"CHARGEPIN_DB_URL": db_url, ENV_KEY: vault.current.hex()}
        headers: dict[str, str] | None = None
        plan = [(n, 0) for n in sizes] + ([(sizes[-1], audit_rows)] if audit_rows else [])
        have = sizes[0]
        # The servers stay up while the database grows under them, as a fleet's would.
        with contextlib.ExitStack() as stack:
            reveal = stack.enter_context(serve("fleet", "chargepin.fleet.app:create_app", env))
            bare = stack.enter_context(serve("bare", f"{bench_fleet.__name__}:bare_app", {}))
            for chargers, audit in plan:
                grown = provision_s if chargers == have and not audit else 0.0
                if chargers > have:
                    grown = grow_chargers(db_url, vault, have, chargers)
                    have = chargers
                elif audit:
                    grown = fill_audit(db_url, audit)
                figures, headers = asyncio.run(
                    measure_step(reveal, bare, headers, sticker, serial, seconds, concurrency)
                )
                report["steps"].append(
                    {
                        "chargers": bench_fleet.count_rows(db_url, "chargers"),
                        "audit_rows": bench_fleet.count_rows(db_url, "pin_reveals"),
                        "grow_seconds": round(grown, 3),
                        "load_average": load_average(),
                        **figures,
                    }
                )
    first, last = report["steps"][0]["cpu_ratio"], report["steps"][-1]["cpu_ratio"]
    report["growth"] = round(last / first, 3)
    report["flat_target"] = FLAT_TARGET
    report["pass"] = report["growth"] <= FLAT_TARGET
    report["duration_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    return report


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages when the step was measured."""
    return [round(x, 2) for x in os.getloadavg()]


def plot(reports: list[dict[str, Any]], png: Path) -> None:
    """Reveal and bare server CPU per request against the step, one line pair per database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for report in reports:
        steps = report["steps"]
        labels = [_label(s) for s in steps]
        name = report["database"]
        axes.plot(
            labels,
            [s["reveal"]["server_cpu_ms_per_request"] for s in steps],
            marker="o",
            label=f"PIN reveal ({name})",
        )
        axes.plot(
            labels,
            [s["bare"]["server_cpu_ms_per_request"] for s in steps],
            marker="x",
            linestyle="--",
            label=f"bare FastAPI (beside {name})",
        )
    axes.set_ylabel("server CPU per request (ms)")
    axes.set_xlabel("chargers in the fleet (and audit rows)")
    axes.set_ylim(bottom=0)
    axes.set_title("PIN reveal cost as the fleet and its audit grow")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def _label(step: dict[str, Any]) -> str:
    chargers = f"{step['chargers']:.0e}".replace("e+0", "e")
    if step["audit_rows"] >= 1_000_000:
        return f"{chargers}\n+{step['audit_rows'] / 1e6:.0f}M audit"
    return chargers


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"chargepin bench reveal-growth ({report['database']})")
    for column in ("chargers", "audit rows", "reveal CPU", "bare CPU", "reveal / bare", "load"):
        table.add_column(column, justify="right")
    for step in report["steps"]:
        table.add_row(
            f"{step['chargers']:,}",
            f"{step['audit_rows']:,}",
            f"{step['reveal']['server_cpu_ms_per_request']:.3f} ms",
            f"{step['bare']['server_cpu_ms_per_request']:.3f} ms",
            f"{step['cpu_ratio']:.2f}",
            f"{step['load_average'][0]:.1f}",
        )
    verdict = "pass" if report["pass"] else "MISS"
    table.add_row(
        f"largest / smallest (<= {report['flat_target']})", "", "", "", f"{report['growth']:.2f}"
    )
    table.add_row(verdict, "", "", "", "", "")
    return table


def run_growth_bench(
    json_path: Path | None,
    png_path: Path | None,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    audit_rows: int = DEFAULT_AUDIT_ROWS,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    db_url: str | None = None,
) -> int:
    """Run the steps, print the table, write the JSON (and the PNG); the exit code (0 flat,
    1 not flat, 2 could not measure)."""
    parts = ["chargepin bench reveal-growth"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    if png_path is not None:
        parts.append(f"--png {png_path}")
    parts.append(f"--sizes {','.join(str(s) for s in sizes)} --audit-rows {audit_rows}")
    parts.append(f"--seconds {seconds:g} --concurrency {concurrency}")
    if db_url is not None:
        from sqlalchemy import make_url

        parts.append(f"--db-url {make_url(db_url).render_as_string(hide_password=True)}")

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-growth-") as tmp:
            report = run_growth(
                Path(tmp), sizes, audit_rows, seconds, concurrency, db_url, " ".join(parts)
            )
        if png_path is not None:
            plot([report], png_path)
        return report

    return report_bench(
        measure,
        (ChargepinError, ValueError, httpx.HTTPError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
