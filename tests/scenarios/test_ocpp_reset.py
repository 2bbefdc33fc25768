"""A CSMS's Reset restarts the real `chargepin charger run` process's daemon as a reboot would:
the radio, the state file and the OCPP link; the next BootNotification says RemoteReset, the
ResetOrReboot event arrives, and phones pair again (processes: `chargepin radio`,
`chargepin charger run --csms`, `chargepin phone pair`; the CSMS is made with the `ocpp`
package in this test, on loopback)."""

from __future__ import annotations

import pytest
from ocpp.v201 import call

from chargepin.charger.store import StateStore
from tests.helpers.ocpp_csms import TestCsms
from tests.helpers.processes import SERIAL, Bench
from tests.scenarios.test_ocpp_kill9 import start_charger

pytestmark = pytest.mark.slow


async def test_a_reset_restarts_the_daemon_and_it_boots_with_remote_reset(bench: Bench) -> None:
    bench.start_radio()
    bench.init()
    with StateStore.open(bench.state) as store:
        csms = await TestCsms({SERIAL: store.csms_password}).start()
    try:
        daemon = start_charger(bench, csms)
        received = csms.of(SERIAL)
        await csms.wait_for(lambda: len(received.boots) == 1 and SERIAL in csms.peers)
        answer = await csms.ask(SERIAL, call.Reset(type="Immediate"))
        assert answer.status == "Accepted"

        await csms.wait_for(lambda: len(received.boots) == 2, timeout=30)
        assert [boot["reason"] for boot in received.boots] == ["PowerUp", "RemoteReset"]
        await csms.wait_for(
            lambda: [e["type"] for e in received.unique_events()].count("StartupOfTheDevice") == 2
        )
        types = [event["type"] for event in received.unique_events()]
        assert types == ["StartupOfTheDevice", "ResetOrReboot", "StartupOfTheDevice"]
        assert daemon.process.poll() is None  # the same process, restarted inside

        # Bluetooth came back with the daemon: a phone pairs with the PIN.
        paired = bench.phone("pair", 1, SERIAL, pin=bench.charger_pin())
        assert paired.returncode == 0, paired.stderr
    finally:
        await csms.stop()
