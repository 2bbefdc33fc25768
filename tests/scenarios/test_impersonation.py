"""Issue 9 point 8 through the real fleet (HTTP over ASGI), the real daemon and real phones:
a device that imitates a charger gets no passkey from the app, and the genuine charger still
pairs, with and without the phone's address privacy, and after a wrong PIN.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from chargepin.core.pin import Pin
from chargepin.fleet.models import PresenceNonce
from chargepin.lab.attacks import impersonate
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import troubleshooting
from chargepin.phone.client import ChargerLink
from chargepin.phone.errors import NotThisCharger, WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused
from chargepin.phone.presence import vouched_pin
from chargepin.radio.link_addresses import self_on_air


def nonces_issued(fleet: LocalFleet) -> int:
    with fleet.state.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(PresenceNonce)) or 0)


@pytest.mark.slow
@pytest.mark.parametrize("relay", ["none", "own"], ids=["forged-proof", "relayed-proof"])
async def test_fake_charger_learns_no_passkey_bits(relay: impersonate.RelayMode) -> None:
    """The fake copies the real charger's advertising and open info (its attestation too) and
    learns passkey bits as the responder. The old pairing path leaks bits to it (the control:
    this test can fail); the app's path refuses before any pairing starts, whether the fake
    makes up a proof or relays the nonce to the real charger over its own link."""
    rng = random.Random(9)
    async with impersonate.scene("hardened", rng) as place:
        assert place.victim is not None and place.victim_fleet is not None
        phone, fleet, serial = place.victim, place.victim_fleet, place.serial
        leaky = impersonate.BitLearner(rng)
        await place.fake(leaky)
        pin = await fleet.pin_of_epoch(serial, 0)
        with pytest.raises(WrongPin):  # the old path: the fleet's PIN typed into the fake
            await phone.connect(serial, pin=pin)
        assert leaky.pairing_requests == 1 and leaky.known_bits >= 1
        await place.drop_fakes()

        learner = impersonate.BitLearner(rng)
        fake = await place.fake(learner, relay=relay)
        for _ in range(3):
            with pytest.raises(NotThisCharger, match=f"not charger {serial}; the PIN was not"):
                await troubleshooting.connect(phone, fleet, serial)
        assert learner.pairing_requests == 0 and learner.rounds_seen == 0
        assert learner.known_bits == 0
        assert fake.relayed == (3 if relay == "own" else 0)
        assert await phone.bonds.get_all() == []
        # The real charger saw no failed attempt: its PIN and epoch did not move.
        assert place.daemon is not None and place.daemon.store.epoch == 0


async def test_a_genuine_proof_of_another_charger_gets_no_pin(
    bed: Testbed, fleet: LocalFleet
) -> None:
    """A real charger of the same fleet answers a nonce issued for another one: refused."""
    first, second = fleet.provision("Pulsar Max", "6.11.2", count=2)
    await bed.install(first.bundle)
    await bed.install(second.bundle)
    owner = await fleet.account("owner@example.com")
    for made in (first, second):
        await owner.claim(made.sticker.encode())
    phone = await bed.phone("owner-phone")
    refusals: list[FleetRefused] = []

    async def present_for_the_first(link: ChargerLink) -> Pin:
        """The second charger's genuine proof, handed in for the first charger's nonce."""
        nonce = await owner.presence_nonce(first.serial)
        proof = await link.prove_presence(nonce)
        try:
            return await owner.pin_for_presence(
                first.serial, nonce, proof, self_on_air(link.connection)
            )
        except FleetRefused as error:
            refusals.append(error)
            raise

    with pytest.raises(FleetRefused):
        await phone.connect(second.serial, vouched=present_for_the_first)
    assert [r.code for r in refusals] == ["presence_invalid"]
    with pytest.raises(NotThisCharger, match="it says it is"):
        await phone.connect(
            second.serial, vouched=lambda link: vouched_pin(link, owner, first.serial)
        )
    assert await phone.bonds.get_all() == []


@pytest.mark.parametrize("privacy", [False, True], ids=["identity-address", "private-address"])
async def test_the_real_charger_proves_itself_and_pairs(
    bed: Testbed, fleet: LocalFleet, privacy: bool
) -> None:
    """The proof binds the phone's address on the air: with address privacy (a resolvable
    private address per connection), and after the phone forgot a charger that still knows its
    IRK (the charger resolves the address; the proof still names the one on the air)."""
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle)
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    phone = await bed.phone("owner-phone", privacy=privacy)
    connected = await troubleshooting.connect(phone, owner, made.serial)
    assert connected.paired_now
    await connected.link.disconnect()
    assert nonces_issued(fleet) == 1
    # Bonded: reconnects with its keys, no nonce, no PIN (the bonded path is untouched).
    again = await troubleshooting.connect(phone, owner, made.serial)
    assert not again.paired_now
    await again.link.disconnect()
    assert nonces_issued(fleet) == 1
    # Forgotten on the phone, remembered by the charger: proves and pairs again.
    await phone.forget(connected.link.address)
    third = await troubleshooting.connect(phone, owner, made.serial)
    assert third.paired_now and nonces_issued(fleet) == 2
    await third.link.disconnect()
    assert daemon.store.epoch == 0


async def test_after_a_wrong_pin_the_retry_proves_the_new_epoch(
    bed: Testbed, fleet: LocalFleet
) -> None:
    """The troubleshooting flow: a typed wrong PIN moves the hardened charger on; the retry's
    proof attests the new epoch and the fleet answers its PIN."""
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle)
    owner: FleetClient = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    shown: list[str] = []
    connected = await troubleshooting.connect(
        await bed.phone("typo"), owner, made.serial, typed_pin="918273", show=shown.append
    )
    assert connected.paired_now and daemon.store.epoch == 1
    assert shown == [connected.troubleshooting]
    assert str(daemon.store.current_pin()) in shown[0]
    await connected.link.disconnect()
    assert (await owner.charger_info(made.serial)).epoch == 1
