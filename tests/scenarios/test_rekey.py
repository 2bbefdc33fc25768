"""Re-keying (issue 9): the owner moves a charger to a PIN sequence nobody has seen, by ticket,
through the real fleet API and the real daemon; Charger Info then shows the new PIN to everyone
who is still a member, and nothing is lost when the receipt is."""

from __future__ import annotations

import pytest

from chargepin.charger.daemon import ChargerDaemon
from chargepin.core.epochs import epoch_pin
from chargepin.core.tickets import Action
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.fleet_client import FleetClient, FleetRefused


async def _commissioned(
    bed: Testbed, fleet: LocalFleet, firmware: str = "6.11.2"
) -> tuple[ChargerDaemon, str, FleetClient, FleetClient]:
    """A charger, its owner (bonded phone) and one invited member."""
    [made] = fleet.provision("Pulsar Max", firmware)
    bundle = made.bundle
    daemon = await bed.install(bundle)
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    code = await owner.invite(made.serial, "member@example.com")
    member = await fleet.account("member@example.com")
    await member.accept(code)
    return daemon, made.serial, owner, member


async def test_a_rekey_ticket_moves_charger_and_charger_info_to_the_new_generation(
    bed: Testbed, fleet: LocalFleet
) -> None:
    daemon, serial, owner, member = await _commissioned(bed, fleet)
    old_pin = (await member.charger_info(serial)).pin
    phone = await bed.phone("owner-phone")
    link = (await troubleshooting.connect(phone, owner, serial)).link
    result = await owner_actions.apply(link, owner, Action.REKEY)
    assert result.ok and result.action == "rekey"
    assert daemon.store.generation == 1
    assert daemon.store.current_pin() == epoch_pin(daemon.store.secret, serial, 0, 1) != old_pin
    # Bonds stay: the owner's link is still served.
    await link.status()
    info = await link.read_info()
    assert info.generation == 1
    await link.disconnect()
    # Both members see the charger's new PIN at once (the receipt committed it).
    assert (await owner.charger_info(serial)).pin == daemon.store.current_pin()
    assert (await member.charger_info(serial)).pin == daemon.store.current_pin()
    # A member's new phone pairs with it; the charger's log says what happened.
    again = await troubleshooting.connect(await bed.phone("member-phone"), member, serial)
    assert again.paired_now and again.troubleshooting is None
    await again.link.disconnect()
    assert [e.detail for e in daemon.store.events() if e.kind == "pin_rekeyed"] == ["generation 1"]


async def test_a_rekey_whose_receipt_was_lost_is_committed_from_the_attested_info(
    bed: Testbed, fleet: LocalFleet
) -> None:
    daemon, serial, owner, member = await _commissioned(bed, fleet)
    link = (await troubleshooting.connect(await bed.phone("owner-phone"), owner, serial)).link
    ticket = await owner.ticket(serial, await link.read_challenge(), Action.REKEY.value)
    await link.submit_ticket(ticket)  # applied; the receipt never reaches the fleet
    await link.disconnect()
    assert daemon.store.generation == 1
    # The member's new phone relays the attested info first: the fleet commits the re-key
    # and hands out the generation-1 PIN, so the first pairing works.
    connected = await troubleshooting.connect(await bed.phone("member-phone"), member, serial)
    assert connected.paired_now and connected.troubleshooting is None
    await connected.link.disconnect()
    assert (await owner.charger_info(serial)).pin == daemon.store.current_pin()


async def test_only_the_owner_rekeys_and_an_optional_class_charger_can_too(
    bed: Testbed, fleet: LocalFleet
) -> None:
    _daemon, serial, _owner, member = await _commissioned(bed, fleet)
    with pytest.raises(FleetRefused) as refused:
        await member.ticket(serial, bytes(16), Action.REKEY.value)
    assert refused.value.status == 403 and "owner" in refused.value.detail
    # Firmware 6.7.17-6.10: the owner may not change the PIN, yet revoking must work there too.
    [optional] = fleet.provision("Pulsar Plus", "6.8.0", prefix="OPT")
    other = await fleet.account("optional@example.com")
    await other.claim(optional.sticker.encode())
    with pytest.raises(FleetRefused) as refused:
        await other.ticket(optional.serial, bytes(16), Action.CHANGE_PIN.value)
    assert refused.value.status == 409
    assert await other.ticket(optional.serial, bytes(16), Action.REKEY.value)


async def test_revoking_offers_the_rekey_when_the_member_saw_the_pin(
    bed: Testbed, fleet: LocalFleet
) -> None:
    daemon, serial, owner, member = await _commissioned(bed, fleet)
    code = await owner.invite(serial, "never-looked@example.com")
    quiet = await fleet.account("never-looked@example.com")
    await quiet.accept(code)
    await member.charger_info(serial)  # the member saw the PIN (an audited reveal)
    ids = {m["email"]: m["user_id"] for m in await owner.members(serial)}
    seen = await owner.revoke(serial, ids["member@example.com"])
    assert (seen["pins_seen"], seen["rekey_offered"]) == (1, True)
    unseen = await owner.revoke(serial, ids["never-looked@example.com"])
    assert (unseen["pins_seen"], unseen["rekey_offered"]) == (0, False)
    # After a re-key the PINs the member saw are of the old generation: nothing to offer.
    link = (await troubleshooting.connect(await bed.phone("owner-phone"), owner, serial)).link
    done = await owner_actions.revoke_at_charger(link, owner, seen, rekey=True)
    await link.disconnect()
    assert done.rekeyed and daemon.store.generation == 1
    again = await owner.revoke(serial, ids["member@example.com"])
    assert (again["pins_seen"], again["rekey_offered"]) == (0, False)
