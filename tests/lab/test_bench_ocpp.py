"""`chargepin bench ocpp` with tiny numbers: the report's shape and sanity, never its times.

What must hold is that every measurement ran against the real thing: chargers provisioned into
a SQLite file, `chargepin fleet serve` and the bare `ocpp` CSMS each in its own process, the
light stations in theirs, every station booted on both, every event the fleet answered stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from chargepin.clock import FakeClock
from chargepin.core.csms_auth import csms_password
from chargepin.fleet.models import StationSecurityEvent
from chargepin.lab.bench_ocpp import RATIO_TARGET, RSS_TARGET_KIB, run_ocpp_bench
from chargepin.lab.live_server import serve
from chargepin.lab.ocpp_stations import Pool
from tests.helpers.fleet_settings import start_fleet

LATENCY_KEYS = {"p50", "p99", "mean", "min", "max", "n"}
STATIONS = 20


def assert_latency(latency: dict[str, Any], n: int) -> None:
    assert set(latency) == LATENCY_KEYS
    assert latency["n"] == n
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]


def assert_events(phase: dict[str, Any]) -> None:
    assert phase["events"] > 0 and phase["errors"] == {}
    assert phase["seconds"] > 0 and phase["events_per_s"] > 0
    assert_latency(phase["latency_ms"], phase["events"])
    assert phase["server_cpu_ms_per_event"] >= 0


def assert_arm(arm: dict[str, Any]) -> None:
    storm = arm["storm"]
    assert storm["booted"] == STATIONS and storm["errors"] == {}
    assert storm["seconds"] > 0 and storm["booted_per_s"] > 0
    assert_latency(storm["connect_and_boot_ms"], STATIONS)
    assert storm["settle_s"] >= 0 and storm["server_cpu_ms_per_station_after_boot"] >= 0
    memory = arm["memory"]
    # Counted by the kernel on the server's side: every station held a connection.
    assert memory["connections_held"] == STATIONS
    assert memory["connections_held_after_events"] == STATIONS
    rss = memory["rss_kib"]
    assert set(rss) == {"before", "after_storm", "after_events", "after_close"}
    assert all(value > 10_000 for value in rss.values())  # a Python server, in KiB
    assert memory["per_connection_kib"] == round((rss["after_storm"] - rss["before"]) / STATIONS, 1)
    # Neither server negotiates permessage-deflate (fleet/operations.py serve).
    assert arm["websocket_extensions"] == [""]
    assert_events(arm["round_trip"])
    assert_events(arm["throughput"])


@pytest.mark.slow
def test_bench_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_path = tmp_path / "ocpp.json"

    code = run_ocpp_bench(report_path, stations=STATIONS, seconds=0.4, concurrency=4, clients=2)

    report = json.loads(report_path.read_text())
    assert code == (0 if report["pass"] else 1)
    assert report["command"] == (
        f"chargepin bench ocpp --json {report_path} --stations {STATIONS} --seconds 0.4 "
        "--concurrency 4 --clients 2"
    )
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["ocpp"]
    fleet, bare = report["arms"]["fleet"], report["arms"]["bare"]
    assert "fleet serve" in fleet["server"] and "ocpp" in bare["server"]
    assert_arm(fleet)
    assert_arm(bare)
    # One event in flight in the round-trip phase: each answered before the next left.
    assert fleet["round_trip"]["latency_ms"]["n"] == fleet["round_trip"]["events"]

    events = report["fleet_events"]
    assert events["answered_measured"] == (
        fleet["round_trip"]["events"] + fleet["throughput"]["events"]
    )
    assert events["stored_in_all"] >= events["answered_measured"]

    ratios = report["ratios"]
    assert ratios["throughput"] == round(
        fleet["throughput"]["events_per_s"] / bare["throughput"]["events_per_s"], 3
    )
    targets = report["targets"]
    assert targets["throughput_ratio"] == {
        "value": ratios["throughput"],
        "target": RATIO_TARGET,
        "pass": ratios["throughput"] >= RATIO_TARGET,
    }
    per_kib = fleet["memory"]["per_connection_kib"]
    assert targets["rss_per_connection_kib"]["pass"] == (per_kib <= RSS_TARGET_KIB)
    assert targets["all_booted"]["pass"] is True
    assert targets["at_target_scale"]["pass"] is False  # 20 is not 5,000
    assert report["pass"] == (
        targets["throughput_ratio"]["pass"] and targets["rss_per_connection_kib"]["pass"]
    )

    table = capsys.readouterr().out
    assert "fleet CSMS" in table and "bare ocpp CSMS" in table


@pytest.mark.parametrize(
    ("stations", "seconds", "concurrency", "clients", "message"),
    [
        (0, 1.0, 1, 1, "stations must be at least 1"),
        (5, 0.0, 1, 1, "seconds must be more than 0"),
        (5, 1.0, 0, 1, "concurrency must be at least 1"),
        (5, 1.0, 1, 6, "clients must be 1 to the number of stations"),
    ],
)
def test_bench_refuses_nonsense(
    capsys: pytest.CaptureFixture[str],
    stations: int,
    seconds: float,
    concurrency: int,
    clients: int,
    message: str,
) -> None:
    assert run_ocpp_bench(None, stations, seconds, concurrency, clients) == 2
    assert message in capsys.readouterr().out


async def test_light_stations_against_the_fleet_csms(tmp_path: Path) -> None:
    """The stations the bench drives, in this process, against the real app on loopback: the
    ones with their charger's password boot and have every event stored; a wrong password and
    an unknown serial are refused before the upgrade and counted, never raised."""
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", FakeClock())
    made = fleet.provision("Pulsar Max", "6.11", count=3)
    good = [(c.serial, csms_password(c.secret, c.serial)) for c in made[:2]]
    wrong = (made[2].serial, csms_password(made[0].secret, made[2].serial))
    pool = Pool([*good, wrong, ("CPX999999", good[0][1])])
    try:
        with serve(fleet.app) as base_url:
            url = base_url.replace("http://", "ws://", 1) + "/ocpp/"
            storm = await pool.connect("fleet", url, None, timeout=30)
            events = await pool.events("fleet", seconds=0.3, concurrency=2, timeout=30)
            closed = await pool.close("fleet")
    finally:
        fleet.dispose()

    assert storm["booted"] == 2 and storm["errors"] == {"http 401": 2}
    assert events["errors"] == {} and events["events"] > 0
    assert closed == {"closed": 2}
    with fleet.state.sessions() as db:
        stored = db.scalar(select(func.count()).select_from(StationSecurityEvent))
        serials = set(db.scalars(select(StationSecurityEvent.event_id)))
    assert stored == events["events"]
    assert {event_id.rsplit(":", 1)[0] for event_id in serials} == {s for s, _ in good}
