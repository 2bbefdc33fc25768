"""`chargepin bench limits`: what the limits that protect the fleet service cost and do.

Against the real app served by uvicorn on 127.0.0.1, on the database given (PostgreSQL for the
shared counters; a fresh SQLite file if none):

- **the rate limit's cost**: closed-loop `GET /me` with an unknown token (401 after one query
  on a pooled connection), sources spread over 256 addresses by X-Forwarded-For, with the
  limit off and on (a rate no one reaches, so every request is counted: one UPSERT each on
  PostgreSQL);
- **a flood past the limit**: one source over its rate, the refusals per second (answered from
  the process's memory of refused sources, no database write);
- **back-pressure**: the pool's one connection held, the time until 503 with a 1 s pool timeout.
"""

from __future__ import annotations

import asyncio
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from chargepin.clock import SystemClock
from chargepin.core.errors import ChargepinError
from chargepin.fleet.app import create_app
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.source_limits import SourceLimitSettings
from chargepin.fleet.vault import Vault
from chargepin.lab.bench import report_bench
from chargepin.lab.live_server import serve

HEADER = "X-Forwarded-For"
POOL_TIMEOUT = 1.0
TOKEN = {"Authorization": "Bearer not-a-token"}
"""An unknown login: `GET /me` looks it up (one query on a pooled connection) and answers 401."""


def _settings(db_url: str, limits: SourceLimitSettings, **extra: Any) -> FleetSettings:
    return FleetSettings(db_url=db_url, source_limits=limits, **extra)


async def _load(base: str, seconds: float, concurrency: int, sources: int) -> dict[str, Any]:
    """Closed loops for `seconds`; the answers by status and the rate."""
    counts: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        end = time.monotonic() + seconds

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < end:
                k = i % sources
                answer = await http.get(
                    "/me", headers={HEADER: f"198.51.{k // 256}.{k % 256}", **TOKEN}
                )
                counts[answer.status_code] = counts.get(answer.status_code, 0) + 1
                i += concurrency

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    total = sum(counts.values())
    return {"requests": total, "per_second": round(total / elapsed, 1), "statuses": counts}


def _arm(db_url: str, limits: SourceLimitSettings) -> Any:
    return create_app(_settings(db_url, limits), vault=Vault.generate(), clock=SystemClock())


def run_bench(db_url: str, seconds: float, concurrency: int, command: str) -> dict[str, Any]:
    off = SourceLimitSettings(rate=0, in_flight=0, sockets=0, header=HEADER)
    on = SourceLimitSettings(rate=10**9, window=60, header=HEADER)
    flood = SourceLimitSettings(rate=10, window=3600, header=HEADER)
    report: dict[str, Any] = {
        "command": command,
        "database": db_url.split(":", 1)[0],
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "seconds": seconds,
        "concurrency": concurrency,
    }
    for name, limits, sources in (("off", off, 256), ("on", on, 256), ("flood", flood, 1)):
        app = _arm(db_url, limits)
        try:
            with serve(app) as base:
                report[name] = asyncio.run(_load(base, seconds, concurrency, sources))
        finally:
            app.state.fleet.engine.dispose()
    report["cost_percent"] = round(
        100 * (1 - report["on"]["per_second"] / report["off"]["per_second"]), 1
    )
    app = create_app(
        _settings(db_url, off, db_pool_size=1, db_max_overflow=0, db_pool_timeout=POOL_TIMEOUT),
        vault=Vault.generate(),
        clock=SystemClock(),
    )
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
            held = app.state.fleet.engine.connect()
            started = time.monotonic()
            busy = http.get("/me", headers=TOKEN)
            waited = time.monotonic() - started
            held.close()
            recovered = http.get("/me", headers=TOKEN).status_code
    finally:
        app.state.fleet.engine.dispose()
    report["back_pressure"] = {
        "pool_timeout": POOL_TIMEOUT,
        "status": busy.status_code,
        "retry_after": busy.headers.get("Retry-After"),
        "seconds_to_answer": round(waited, 3),
        "after_release": recovered,
    }
    report["pass"] = (
        busy.status_code == 503
        and waited < POOL_TIMEOUT + 2
        and recovered == 401
        and report["flood"]["statuses"].get(429, 0) > 0
        and set(report["on"]["statuses"]) == {401}
    )
    return report


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"chargepin bench limits ({report['database']})")
    table.add_column("arm")
    table.add_column("requests /s", justify="right")
    table.add_column("answers")
    for name in ("off", "on", "flood"):
        arm = report[name]
        answers = ", ".join(f"{n}x {s}" for s, n in sorted(arm["statuses"].items()))
        table.add_row(name, f"{arm['per_second']:.0f}", answers)
    table.add_row("rate limit's cost", f"{report['cost_percent']:.1f} %", "")
    bp = report["back_pressure"]
    table.add_row(
        "pool held (timeout 1 s)",
        f"{bp['seconds_to_answer']:.2f} s",
        f"{bp['status']} Retry-After {bp['retry_after']}, then {bp['after_release']}",
    )
    return table


def run_limits_bench(
    json_path: Path | None, db_url: str | None, seconds: float, concurrency: int
) -> int:
    command = f"chargepin bench limits --seconds {seconds:g} --concurrency {concurrency}"
    if db_url:
        command += " --db-url postgresql+psycopg://..."
    if json_path is not None:
        command += f" --json {json_path}"

    def measure() -> dict[str, Any]:
        if db_url:
            return run_bench(db_url, seconds, concurrency, command)
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-limits-") as tmp:
            return run_bench(f"sqlite:///{tmp}/fleet.db", seconds, concurrency, command)

    return report_bench(
        measure,
        (ChargepinError, ValueError, httpx.HTTPError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
