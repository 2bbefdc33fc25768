"""Link slots: strangers who connect and do nothing must not shut anyone out.

The link timers run on the event loop's clock, like the SMP timer: they bound radio links, not
lockout time, so the fake charger clock does not drive them. The tests keep the daemon's own
durations and move the loop's clock past them (tests.helpers.timing): a timer that should
not drop anybody has fired by the time the links are checked, whatever the machine's load.

The charger holds `max_links` (4) links. Found by the lab (`chargepin lab attack parallel`):
four idle centrals used to fill every slot, the charger stopped advertising and even a bonded
owner could not connect, for as long as they stayed.
"""

from __future__ import annotations

from chargepin.lab.central import BareCentral
from chargepin.lab.testbed import Testbed
from chargepin.phone.client import ChargerLink
from tests.helpers.timing import WITHIN, advance_loop_clock


def watch_drops(links: list[ChargerLink]) -> list[ChargerLink]:
    """The links that end from now on, as they end."""
    dropped: list[ChargerLink] = []
    for link in links:
        connection = link.connection
        connection.once(connection.EVENT_DISCONNECTION, lambda *_, gone=link: dropped.append(gone))
    return dropped


async def test_four_idle_strangers_do_not_shut_out_the_bonded_owner(bed: Testbed) -> None:
    daemon = await bed.charger()
    owner = await bed.phone("owner")
    await (await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))).disconnect()
    hogs = [BareCentral(bed.radio, f"hog{i}") for i in range(daemon.timings.max_links)]
    connections = []
    for hog in hogs:
        await hog.start()
        connections.append(await hog.connect(daemon))  # connect, never pair, never write
    advance_loop_clock(daemon.timings.eviction_grace)  # the oldest stranger comes of age
    assert await hog.wait_disconnected(connections[0], WITHIN)  # and made room
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
    dropped = watch_drops(links)
    # Every link is past its grace: had the charger taken any of them for an idle stranger,
    # its eviction would be due now and run before the reads below complete.
    advance_loop_clock(daemon.timings.eviction_grace + 1)
    for link in links:
        await link.status()  # every paired link is still up and served
    assert dropped == []
    for link in links:
        await link.disconnect()


async def test_a_new_link_has_time_to_pair_before_it_can_be_evicted(bed: Testbed) -> None:
    """A phone fetching its PIN (or an admission ticket) from the fleet is unencrypted for a
    moment: strangers filling the other slots meanwhile must not push it out."""
    daemon = await bed.charger()
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
    owner = await bed.phone("owner")
    await (await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))).disconnect()
    stranger = BareCentral(bed.radio, "idle")
    await stranger.start()
    idle = await stranger.connect(daemon)
    bonded = await owner.connect("CP-0001")
    dropped = watch_drops([bonded])
    advance_loop_clock(daemon.timings.unsecured_link_timeout)  # both links' idle timers are due
    assert await stranger.wait_disconnected(idle, WITHIN)
    await bonded.status()  # encrypted links are never timed out
    assert dropped == []
    await bonded.disconnect()
    await stranger.stop()
    assert any(e.kind == "link_dropped" for e in daemon.store.events())
