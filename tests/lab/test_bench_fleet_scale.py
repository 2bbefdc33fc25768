"""`chargepin bench fleet-scale` with tiny numbers: the report's shape and sanity, never its times.

What must hold is that every figure comes from the real thing: chargers provisioned into
PostgreSQL, pgbench run on it, `chargepin fleet gateway` processes, station processes that
roam to a survivor after a gateway is killed with -9 and resend what was not answered, every
answered event stored once, the PIN reveal on 1 and 2 API workers. And that a careless run
gets a clear error with nothing left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import create_engine, text

from chargepin.lab.bench_fleet_scale import (
    FD_MARGIN,
    BenchError,
    Plan,
    own_cluster,
    pg_bindir,
    run_fleet_scale_bench,
)
from chargepin.lab.ocpp_stations import url_order

POSTGRES = os.environ.get("CHARGEPIN_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="needs a PostgreSQL server")

STATIONS = 24
GATEWAYS = 3


def descendants() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def assert_figures(process: dict[str, Any]) -> None:
    assert process["cpu_s"] > 0
    assert process["peak_rss_mib"] > 10  # a Python process with its imports


@pytest.mark.slow
@needs_postgres
def test_a_gateway_killed_mid_events_loses_nothing(tmp_path: Path) -> None:
    assert POSTGRES is not None
    report_path = tmp_path / "scale.json"

    code = run_fleet_scale_bench(
        report_path,
        chargers=STATIONS + 50,
        stations=STATIONS,
        gateways=GATEWAYS,
        clients=2,
        seconds=0.5,
        concurrency=6,
        reveal_seconds=0.2,
        pgbench_seconds=1,
        pgbench_scale=1,
        db_url=POSTGRES + "/postgres",
    )

    report = json.loads(report_path.read_text())
    assert code == 0 and report["pass"]
    assert report["command"].startswith(f"chargepin bench fleet-scale --json {report_path} ")
    assert report["postgresql"]["server"] == "--db-url"
    assert report["postgresql"]["settings"]["server_version"]
    assert report["machine"]["load_average"] and report["load_average_after"]
    assert report["provisioning"]["chargers"] == STATIONS + 50
    assert report["provisioning"]["rows_per_s"] > 0
    for script in ("simple_update", "event_insert"):
        assert report["pgbench"][script]["tps"] > 0

    # Everyone booted, half of them on the gateway that is then killed.
    boot = report["boot"]
    assert boot["failures"] == {}
    assert boot["held_per_gateway"] == [12, 6, 6]
    assert report["events"]["stored"] > 0 and report["events"]["stored_per_s"] > 0

    # The storm: the victim's 12 stations dropped and came back, spread over the survivors.
    storm = report["storm"]
    assert storm["victim_stations"] == 12
    assert storm["dropped"] >= 12  # each of the victim's stations saw its socket die
    assert 0 < storm["seconds_until_all_back"] < 60
    assert storm["held_per_survivor"] == [12, 12]

    # Every event a station saw answered is stored, once; nothing left unanswered.
    delivery = report["delivery"]
    assert delivery["lost"] == 0 and delivery["duplicates"] == 0
    assert delivery["pending_after_drain"] == 0
    assert delivery["acked"] == delivery["created"] > 0
    assert delivery["stored_rows"] == delivery["stored_distinct"] == delivery["created"]
    assert delivery["drops"] >= 12  # at least each of the victim's stations once
    assert delivery["connects"] >= STATIONS + 12

    processes = report["processes"]
    assert [g["killed"] for g in processes["gateways"]] == [True, False, False]
    for process in (*processes["gateways"], *processes["station_clients"]):
        assert_figures(process)
    assert sum(c["stations"] for c in processes["station_clients"]) == STATIONS
    connections = report["postgresql"]["connections_during_ocpp"]
    assert connections["peak_on_bench_database"] >= GATEWAYS  # each gateway's LISTEN at least

    reveal = report["pin_reveal"]
    assert reveal["reveal"]["requests"] > 0 and reveal["reveal_workers"]["requests"] > 0
    assert reveal["workers_to_one_ratio"] > 0
    assert descendants() == []


@pytest.mark.slow
def test_the_throwaway_cluster_is_durable_and_gone_after() -> None:
    with own_cluster() as cluster:
        assert cluster.own and cluster.postmaster is not None
        pid = cluster.postmaster.pid
        engine = create_engine(cluster.url)
        with engine.connect() as connection:
            assert connection.execute(text("SHOW fsync")).scalar_one() == "on"
            assert connection.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
            assert connection.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            data = Path(connection.execute(text("SHOW data_directory")).scalar_one())
        engine.dispose()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not data.exists()


def test_without_postgresql_installed_the_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"PostgreSQL is not installed.*--db-url"):
        pg_bindir(tmp_path)


def test_a_sqlite_url_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "sqlite:///fleet.db"
    assert run_fleet_scale_bench(None, chargers=100, stations=10, db_url=url) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "must be a PostgreSQL URL" in said and "'sqlite'" in said
    assert descendants() == []


def test_an_unreachable_server_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    url = "postgresql+psycopg://nobody@127.0.0.1:9/x"
    assert run_fleet_scale_bench(None, chargers=100, stations=10, db_url=url) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert f"cannot reach PostgreSQL at {url}" in said
    assert time.monotonic() - started < 30
    assert descendants() == []


def test_a_plan_past_the_file_limit_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two gateways: the survivor would take all 40,000 stations' sockets.
    assert run_fleet_scale_bench(None, chargers=40_001, stations=40_000, gateways=2) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "a surviving gateway would hold 40,000 sockets" in said and "--gateways" in said
    assert descendants() == []


def test_the_victims_stations_spread_evenly_over_the_survivors() -> None:
    plan = Plan(stations=20_000, gateways=3, clients=4)
    homes = [plan.home(i) for i in range(plan.stations)]
    assert homes.count(0) == 10_000 and homes.count(1) == homes.count(2) == 5_000
    assert plan.survivor_peak() == 10_000
    plan.check_files(10_000 + FD_MARGIN)
    with pytest.raises(BenchError, match="surviving gateway would hold 10,000"):
        plan.check_files(10_000 + FD_MARGIN - 1)
    shares = plan.shares()
    assert sorted(i for share in shares for i in share) == list(range(plan.stations))
    assert all(len(share) == 5_000 for share in shares)
    # Homes alternate (victim, 1, victim, 2, ...); the victim's stations alternate fallbacks.
    assert [plan.order(i) for i in range(6)] == [
        [0, 1, 2],
        [1, 0, 2],
        [0, 2, 1],
        [2, 1, 0],
        [0, 1, 2],
        [1, 0, 2],
    ]
    assert url_order(3, 0, 0) == [0, 1, 2] and url_order(3, 0, 1) == [0, 2, 1]
    assert url_order(3, 2, 5) == [2, 1, 0]


def command_line(process: psutil.Process) -> str:
    """Its command line, or "" for a child that ended meanwhile (pgbench, a zombie not yet
    reaped by the bench: reading it then raises)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.slow
@needs_postgres
def test_sigterm_mid_run_leaves_nothing_running(tmp_path: Path) -> None:
    assert POSTGRES is not None
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chargepin.cli",
            "bench",
            "fleet-scale",
            "--db-url",
            POSTGRES + "/postgres",
            "--chargers",
            "60",
            "--stations",
            "4",
            "--gateways",
            "2",
            "--seconds",
            "30",
            "--pgbench-seconds",
            "1",
            "--pgbench-scale",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    parent = psutil.Process(bench.pid)
    deadline = time.monotonic() + 60
    # Until the 2 gateways and the station process run (the events' 30 s window).
    while True:
        children = parent.children(recursive=True)
        commands = [command_line(c) for c in children]
        if sum("fleet gateway" in c for c in commands) == 2 and any(
            "ocpp_stations" in c for c in commands
        ):
            break
        assert time.monotonic() < deadline, "the bench never started its children"
        assert bench.poll() is None, bench.communicate()[0]
        time.sleep(0.05)
    bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=60)
    assert bench.returncode != 0, output
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], output
