"""Link slots: strangers who connect and do nothing must not shut anyone out.

The link timers run on the event loop's clock, like the SMP timer: they bound radio links, not
lockout time, so the fake charger clock does not drive them. The tests shorten them to tenths of
a second; the two short sleeps below give a wrong drop the chance to show.

The charger holds `max_links` (4) links. Found by the lab (`chargepin lab attack parallel`):
four idle centrals used to fill every slot, the charger stopped advertising and even a bonded
owner could not connect, for as long as they stayed.
"""

from __future__ import annotations

import asyncio

from chargepin.lab.central import BareCentral
from chargepin.lab.testbed import Testbed


async def test_four_idle_strangers_do_not_shut_out_the_bonded_owner(bed: Testbed) -> None:
    daemon = await bed.charger()
    daemon.timings.eviction_grace = 0.2
    owner = await bed.phone("owner")
    await (await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))).disconnect()
    hogs = [BareCentral(bed.radio, f"hog{i}") for i in range(daemon.timings.max_links)]
    connections = []
    for hog in hogs:
        await hog.start()
        connections.append(await hog.connect(daemon))  # connect, never pair, never write
    assert await hog.wait_disconnected(connections[0], 1.0)  # the oldest made room, once of age
    assert all(c.handle in c.device.connections for c in connections[1:])

    link = await owner.connect("CP-0001")  # bonded: encrypts at once
    assert not link.paired_now
    await link.start_charging()
    await link.disconnect()
    for hog in hogs:
        await hog.stop()


async def test_a_full_charger_of_paired_phones_evicts_nobody(bed: Testbed) -> None:
    daemon = await bed.charger()
    phones = [await bed.phone(f"phone{i}") for i in range(daemon.timings.max_links)]
    links = []
    for phone in phones:
        links.append(await phone.connect("CP-0001", pin=str(daemon.store.current_pin())))
    await asyncio.sleep(0.2)
    for link in links:
        await link.status()  # every paired link is still up and served
    for link in links:
        await link.disconnect()


async def test_a_new_link_has_time_to_pair_before_it_can_be_evicted(bed: Testbed) -> None:
    """A phone fetching its PIN (or an admission ticket) from the fleet is unencrypted for a
    moment: strangers filling the other slots meanwhile must not push it out."""
    daemon = await bed.charger()
    daemon.timings.eviction_grace = 2.0
    owner = await bed.phone("owner")
    hogs = [BareCentral(bed.radio, f"hog{i}") for i in range(daemon.timings.max_links - 1)]
    connections = []

    async def slow_fleet(_info: object) -> str:
        for hog in hogs:  # while the app waits for the fleet, strangers take every other slot
            await hog.start()
            connections.append(await hog.connect(daemon))
        return str(daemon.store.current_pin())

    link = await owner.connect("CP-0001", pin=slow_fleet)
    assert link.paired_now
    await link.status()
    await link.disconnect()
    for hog in hogs:
        await hog.stop()


async def test_an_idle_unencrypted_link_is_dropped_after_the_timeout(bed: Testbed) -> None:
    daemon = await bed.charger()
    daemon.timings.unsecured_link_timeout = 0.3
    owner = await bed.phone("owner")
    await (await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))).disconnect()
    stranger = BareCentral(bed.radio, "idle")
    await stranger.start()
    idle = await stranger.connect(daemon)
    bonded = await owner.connect("CP-0001")
    assert await stranger.wait_disconnected(idle, 3.0)
    await asyncio.sleep(0.5)
    await bonded.status()  # encrypted links are never timed out
    await bonded.disconnect()
    await stranger.stop()
    assert any(e.kind == "link_dropped" for e in daemon.store.events())
