"""The cap on open outbox commands per charger (fleet/csms/outbox.py, MAX_OPEN_PER_CHARGER):
refused with 409 `too_many_queued` by the JSON API and by the pages, held against many requests
at once, and lifted once the charger has applied what waited (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.lab.live_server import serve
from tests.fleet.test_web_app import OWNER, commissioned_charger
from tests.helpers.fleet_accounts import login
from tests.helpers.ocpp_station import StationState, station
from tests.helpers.processes import until
from tests.helpers.web_app import post_form

CAP = 3


def capped(client: TestClient) -> None:
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    fleet.settings = dataclasses.replace(fleet.settings, outbox_max_open=CAP)


async def test_an_offline_charger_s_queue_is_capped_for_the_api_and_the_pages(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    capped(client)
    browser, made = commissioned_charger(client)
    serial = made.serial
    owner = login(client, OWNER)
    commands = f"/chargers/{serial}/commands"
    with serve(client.app) as live:  # type: ignore[arg-type]
        # Many at once, from one careless owner script: exactly CAP are queued.
        async with httpx.AsyncClient(base_url=live, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(commands, json={"action": "rekey"}, headers=owner) for _ in range(12))
            )
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(202) == CAP, [a.text for a in answers]
        refusals = [a.json() for a in answers if a.status_code == 409]
        assert refusals and all(r["error"] == "too_many_queued" for r in refusals)
        assert f"{CAP} commands already wait for {serial}" in refusals[0]["detail"]
        # SQLite's second writer may be told busy instead (503, nothing written): never more.
        assert set(statuses) <= {202, 409, 503}
        listed = client.get(commands, headers=owner).json()
        assert [c["state"] for c in listed] == ["waiting"] * CAP

        # The pages say so too, on Charger Info, with nothing queued.
        info = f"/app/chargers/{serial}"
        page = post_form(browser, f"{info}/change-pin", {"pin": "730418"}, from_page=info)
        assert page.status_code == 409
        assert "commands already wait for" in page.text and "730418" not in page.text
        assert len(client.get(commands, headers=owner).json()) == CAP

        # Once the charger connected and applied them, the owner can queue again.
        state = StationState()
        async with station(live, serial, made.secret, fleet_clock.now, state) as sim:
            await sim.boot()

            async def all_applied() -> list[dict[str, object]] | None:
                listed = client.get(commands, headers=owner).json()
                return listed if all(c["state"] == "applied" for c in listed) else None

            listed = await until(all_applied, "every queued command applied")
            assert [c["state"] for c in listed] == ["applied"] * CAP
        again = client.post(commands, json={"action": "rekey"}, headers=owner)
        assert again.status_code == 202, again.text
