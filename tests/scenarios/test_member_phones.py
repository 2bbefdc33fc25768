"""A member's phones are what the charger vouched for (issue 9, point 7): the real daemon on the
virtual radio, the fleet service over real HTTP (ASGI), one fake clock.

A member reported the owner's Bluetooth address as "their phone", and revoking the member told
the owner to remove their own phone. Now the phone relays the charger's bond statement after
pairing, and the fleet lists only addresses the charger vouched for.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from chargepin.core import bond_statement
from chargepin.core.bond_statement import BondedPhone
from chargepin.core.keys import new_secret
from chargepin.fleet.models import PhoneBond
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import troubleshooting
from chargepin.phone.fleet_client import FleetRefused


@pytest.mark.slow
async def test_member_cannot_list_the_owners_phone(bed: Testbed, fleet: LocalFleet) -> None:
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    bundle = made.bundle
    daemon = await bed.install(made.bundle)
    serial = made.serial
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    guest = await fleet.account("guest@example.com")
    await guest.accept(await owner.invite(serial, "guest@example.com"))

    # Honest pairings: each phone relays the charger's statement of the bond it just made.
    owner_link = (await troubleshooting.connect(await bed.phone("owner-phone"), owner, serial)).link
    guest_link = (await troubleshooting.connect(await bed.phone("guest-phone"), guest, serial)).link
    owner_phone = str(owner_link.connection.self_address)
    guest_phone = str(guest_link.connection.self_address)
    bonded = {bond.address for bond in daemon.store.keystore.list_bonds()}
    assert bonded == {owner_phone, guest_phone}
    owner_statement = await owner_link.read_bond_statement()
    guest_statement = await guest_link.read_bond_statement()
    assert bond_statement.decode(owner_statement).address == owner_phone
    assert bond_statement.decode(guest_statement).address == guest_phone

    # 1. The seed's way: the member names the owner's address. Refused, saying what to do.
    with pytest.raises(FleetRefused) as named:
        await guest.report(serial, "phone_address", owner_phone)
    assert named.value.status == 422 and named.value.code == "phone_address_unattested"
    assert f"/chargers/{serial}/phones" in named.value.detail

    # 2. A forged statement: the owner's address under the member's genuine MAC, or a statement
    # MACed with another key (a charger of the member's own, say).
    guest_says = bond_statement.decode(guest_statement)
    claimed = BondedPhone(owner_phone, guest_says.sequence, guest_says.bond)
    swapped = bond_statement.make(bundle.secret, serial, claimed)[:20] + guest_statement[20:]
    own_key = bond_statement.make(new_secret(), serial, claimed)
    for forged in (swapped, own_key):
        with pytest.raises(FleetRefused) as refused:
            await guest.relay_bond(serial, forged)
        assert refused.value.status == 422 and "did not make it" in refused.value.detail

    # 3. The owner's genuine statement, leaked to the member (read later, so with a higher
    # sequence): the bond is the owner's, who relayed it first.
    assert bond_statement.decode(owner_statement).sequence > 1
    with pytest.raises(FleetRefused) as stale:
        await guest.relay_bond(serial, owner_statement)
    assert stale.value.status == 409 and stale.value.code == "bond_statement_stale"

    # Revoking the member lists the member's phone, and only it.
    members = {m["email"]: m for m in await owner.members(serial)}
    assert members["owner@example.com"]["phones"] == [owner_phone]
    assert members["guest@example.com"]["phones"] == [guest_phone]
    revoked = await owner.revoke(serial, members["guest@example.com"]["user_id"])
    assert revoked["phones_to_remove"] == [guest_phone]
    await owner_link.disconnect()
    await guest_link.disconnect()


@pytest.mark.slow
async def test_a_phone_is_listed_again_at_its_next_connection_and_once(
    bed: Testbed, fleet: LocalFleet
) -> None:
    """Every connection relays the charger's statement: a relay that never reached the fleet
    (or a bond from before phones were listed this way) is listed at the next connection; the
    same phone logged in with a second account stays the first account's, and connects."""
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    await bed.install(made.bundle)
    serial = made.serial
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    phone = await bed.phone("family-phone")
    first = await troubleshooting.connect(phone, owner, serial)
    address = str(first.link.connection.self_address)
    await first.link.disconnect()
    with fleet.state.sessions() as db, db.begin():
        db.execute(delete(PhoneBond))  # the relay that never arrived
    assert [m["phones"] for m in await owner.members(serial)] == [[]]

    again = await troubleshooting.connect(phone, owner, serial)
    assert not again.paired_now  # bonded: no PIN, and the statement relayed all the same
    await again.link.disconnect()
    assert [m["phones"] for m in await owner.members(serial)] == [[address]]

    partner = await fleet.account("partner@example.com")
    await partner.accept(await owner.invite(serial, "partner@example.com"))
    shared = await troubleshooting.connect(phone, partner, serial)  # the bond relayed is owner's
    assert not shared.paired_now
    await shared.link.disconnect()
    members = {m["email"]: m["phones"] for m in await owner.members(serial)}
    assert members == {"owner@example.com": [address], "partner@example.com": []}
