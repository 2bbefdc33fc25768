"""kill -9 of the charger daemon with security events queued for an unreachable CSMS: after the
restart every event arrives (processes: `chargepin radio`, `chargepin charger run --csms`,
`chargepin phone pair`; the CSMS is made with the `ocpp` package in this test, on loopback)."""

from __future__ import annotations

import json
import signal

import pytest

from chargepin.charger.store import StateStore
from chargepin.lab.processes import Service, ready_fields
from tests.helpers.ocpp_csms import TestCsms
from tests.helpers.processes import SERIAL, Bench
from tests.scenarios.test_multiprocess import WRONG_PIN_EXIT, another_pin

pytestmark = pytest.mark.slow


def start_charger(bench: Bench, csms: TestCsms) -> Service:
    daemon = bench.start(
        "charger",
        "run",
        "--state",
        str(bench.state),
        "--transport",
        bench.transport(0),
        "--csms",
        csms.url(),
        name="charger",
    )
    assert ready_fields(daemon.wait_ready())["serial"] == SERIAL
    return daemon


async def test_events_queued_before_a_kill_9_all_arrive_after_the_restart(bench: Bench) -> None:
    bench.start_radio()
    bench.init()
    with StateStore.open(bench.state) as store:
        csms = TestCsms({SERIAL: store.csms_password})  # started only after the kill
    daemon = start_charger(bench, csms)
    for _ in range(3):
        wrong = bench.phone("pair", 1, SERIAL, pin=another_pin(bench.charger_pin()))
        assert wrong.returncode == WRONG_PIN_EXIT, wrong.stderr

    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(10) == -signal.SIGKILL
    with StateStore.open(bench.state) as store:
        queued = store.queued_events()
    assert queued[0].type == "StartupOfTheDevice"
    assert sum(e.count for e in queued if e.type == "MaintenanceLoginFailed") == 3

    start_charger(bench, csms)
    await csms.start()
    try:

        def all_arrived() -> bool:
            with StateStore.open(bench.state) as store:
                return store.queue_length() == 0

        await csms.wait_for(all_arrived, timeout=30)
        events = csms.of(SERIAL).unique_events()
        types = [event["type"] for event in events]
        assert types.count("StartupOfTheDevice") == 2  # before the kill, and after it
        failures = [e for e in events if e["type"] == "MaintenanceLoginFailed"]
        counts = [json.loads(e["tech_info"]).get("count", 1) for e in failures]
        assert sum(counts) == 3
        # In queue order: the first start, the failures, the second start.
        ids = [int(e["custom_data"]["event_id"].split(":")[1]) for e in events]
        assert ids == sorted(ids)
        assert types[0] == "StartupOfTheDevice" and types[-1] == "StartupOfTheDevice"
    finally:
        await csms.stop()
