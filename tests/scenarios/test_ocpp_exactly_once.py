"""The real charger daemon against the fleet's own CSMS: a re-key whose answer is lost on the
way back is sent again on the next connection and applied once (issue 12, exactly once).

Between the daemon's OCPP link and the fleet sits a TCP relay (tests/helpers/relay.py) that,
from the commit of the re-key on (the state file's own listener), drops what the charger sends:
the charger applies the ticket and its answer never arrives. The relay then hangs up both
sockets, as a gateway killed at that moment would. Both ends are the real programs; only the
clock is fake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import select

from chargepin.charger.ocpp_station import StationConfig, StationLink, StationTimings
from chargepin.core.csms_link import csms_endpoint
from chargepin.core.events import EventKind
from chargepin.fleet.models import Charger, CsmsCommand
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import PASSWORD, LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone.fleet_client import FleetClient
from tests.helpers.relay import Relay

pytestmark = pytest.mark.slow

FAST = StationTimings(backoff_min=0.05, backoff_max=0.4)


async def until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 15.0
) -> None:
    """Until `check()` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        held = check()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_rekey_whose_answer_was_lost_is_applied_once_by_the_real_charger(
    bed: Testbed, fleet: LocalFleet
) -> None:
    [made] = fleet.provision("Pulsar Max", "6.12")
    daemon = await bed.install(made.bundle)
    with serve(fleet.app) as url:
        relay = Relay(int(url.rsplit(":", 1)[1]))
        endpoint = csms_endpoint(f"ws://127.0.0.1:{relay.start()}/ocpp/", made.serial)
        link = StationLink(daemon, StationConfig(endpoint, timings=FAST))
        link.start()
        owner = FleetClient(url)
        try:
            await owner.register("owner@example.com", PASSWORD)
            await owner.login("owner@example.com", PASSWORD)
            await asyncio.wait_for(link.connected.wait(), 15.0)
            await owner.claim(made.sticker.encode())
            # The moment the charger commits the re-key (its event queued in the same commit,
            # before the answer is written), the relay starts dropping what the charger sends.
            silence = daemon.store.on_queued(lambda: setattr(relay, "client_silenced", True))
            async with httpx.AsyncClient(base_url=url) as http:
                queued = await http.post(
                    f"/chargers/{made.serial}/commands",
                    json={"action": "rekey"},
                    headers={"Authorization": f"Bearer {owner.token}"},
                )
            assert queued.status_code == 202, queued.text
            # The charger applies the ticket; its answer is dropped on the way to the fleet.
            await until(lambda: daemon.store.generation == 1, "the charger re-keyed")
            silence()
            assert relay.client_silenced
            [command] = await owner.commands(made.serial)
            assert command["state"] == "sent"
            connections = link.connections
            relay.hang_up()  # the gateway gone with the answer; the charger comes back

            async def applied() -> bool:
                return [c["state"] for c in await owner.commands(made.serial)] == ["applied"]

            await until(applied, "the command applied after the charger reconnected")
            assert link.connections > connections
        finally:
            await link.stop()
            relay.close()
            await owner.close()
    # Re-keyed once, not twice; one event; the fleet's view is the charger's.
    assert daemon.store.generation == 1
    assert daemon.store.counters()[EventKind.PIN_REKEYED] == 1
    [command] = await owner_commands(fleet, made.serial)
    assert command.attempts == 2 and command.op in daemon.store.applied_ops
    with fleet.state.sessions() as db:
        row = db.scalar(select(Charger).where(Charger.serial == made.serial))
        assert row is not None and row.generation == 1 and row.pending is None


async def owner_commands(fleet: LocalFleet, serial: str) -> list[CsmsCommand]:
    with fleet.state.sessions() as db:
        charger = db.scalar(select(Charger).where(Charger.serial == serial))
        assert charger is not None
        return list(db.scalars(select(CsmsCommand).where(CsmsCommand.charger_id == charger.id)))
