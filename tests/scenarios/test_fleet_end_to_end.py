"""End to end: the factory, the fleet service over real HTTP (ASGI), chargers and phones on the
real Bluetooth stack. One fake clock for everything, so tickets and lockouts agree on time.
"""

from __future__ import annotations

import pytest

from chargepin.core.pin import Pin
from chargepin.core.tickets import Action
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.testbed import Testbed
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.errors import ChargerLocked, PinNeeded, WrongPin
from chargepin.phone.fleet_client import FleetRefused


@pytest.mark.parametrize("profile", ["hardened", "classic"])
async def test_factory_commissioning_pairing_invitation_and_troubleshooting(
    bed: Testbed, fleet: LocalFleet, profile: str
) -> None:
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle, profile)
    owner = await fleet.account("owner@example.com")

    # Commissioning: scan the sticker, the PIN is shown right away.
    info = await owner.claim(made.sticker.encode())
    assert info.role == "owner" and info.pin_enabled and info.pin is not None
    assert info.pin == daemon.store.current_pin()

    # The owner's phone pairs with the PIN the app was shown; then reconnects bonded.
    phone = await bed.phone("owner-phone")
    connected = await troubleshooting.connect(phone, owner, made.serial)
    assert connected.paired_now and connected.troubleshooting is None
    await connected.link.disconnect()
    again = await troubleshooting.connect(phone, owner, made.serial)
    assert not again.paired_now
    await again.link.disconnect()

    # An invited user sees the PIN and pairs.
    code = await owner.invite(made.serial, "guest@example.com")
    guest = await fleet.account("guest@example.com")
    assert (await guest.accept(code))["role"] == "user"
    guest_phone = await bed.phone("guest-phone")
    connected = await troubleshooting.connect(guest_phone, guest, made.serial)
    assert connected.paired_now
    await connected.link.disconnect()

    # A user who types a wrong PIN sees the troubleshooting message and the retry works.
    typo_phone = await bed.phone("typo-phone")
    shown: list[str] = []
    connected = await troubleshooting.connect(
        typo_phone, guest, made.serial, typed_pin="918273", show=shown.append
    )
    assert connected.paired_now and shown and connected.troubleshooting == shown[0]
    await connected.link.disconnect()
    # Charger Info follows the charger (a hardened one moved to a new PIN epoch).
    assert (await guest.charger_info(made.serial)).pin == daemon.store.current_pin()

    # Revoked: the fleet says nothing more about this charger.
    members = await owner.members(made.serial)
    guest_id = next(m["user_id"] for m in members if m["email"] == "guest@example.com")
    await owner.revoke(made.serial, guest_id)
    with pytest.raises(FleetRefused) as refused:
        await guest.charger_info(made.serial)
    assert refused.value.status == 403 and "revoked" in refused.value.detail
    with pytest.raises(FleetRefused):
        await guest.pin_of_epoch(made.serial, 0)


@pytest.mark.parametrize("profile", ["hardened", "classic"])
async def test_an_invited_users_new_phone_gets_past_a_strangers_lockout(
    bed: Testbed, fleet: LocalFleet, profile: str
) -> None:
    """A stranger keeps the charger locked; the invited user's new phone is admitted with a
    ticket from the fleet, pairs with the fleet's PIN and is served; the stranger stays out."""
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle, profile)
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    owner_phone = await bed.phone("owner-phone")
    await (await troubleshooting.connect(owner_phone, owner, made.serial)).link.disconnect()
    code = await owner.invite(made.serial, "guest@example.com")
    guest = await fleet.account("guest@example.com")
    await guest.accept(code)
    stranger = await bed.phone("stranger")
    for _ in range(5):
        with pytest.raises(WrongPin):
            await stranger.connect(made.serial, pin="918273")
    assert (await stranger.read_info(made.serial)).locked

    connected = await troubleshooting.connect(await bed.phone("guest-phone"), guest, made.serial)
    assert connected.paired_now
    await connected.link.start_charging()  # served during the lock (classic too: admitted)
    await connected.link.disconnect()
    with pytest.raises(ChargerLocked):
        await stranger.connect(made.serial, pin=str(daemon.store.current_pin()))
    # The owner's bonded phone is served too (classic locks out bonded phones: admitted).
    bonded = await troubleshooting.connect(owner_phone, owner, made.serial)
    assert not bonded.paired_now
    await bonded.link.stop_charging()
    await bonded.link.disconnect()
    # Revoked users get no admission: the fleet refuses them the ticket.
    members = await owner.members(made.serial)
    await owner.revoke(made.serial, next(m["user_id"] for m in members if m["role"] == "user"))
    with pytest.raises(FleetRefused):
        await troubleshooting.connect(await bed.phone("guest-tablet"), guest, made.serial)


async def test_enabling_the_pin_on_an_optional_class_charger(
    bed: Testbed, fleet: LocalFleet
) -> None:
    [made] = fleet.provision("Pulsar Plus", "6.8.0")
    daemon = await bed.install(made.bundle)
    owner = await fleet.account("owner@example.com")
    info = await owner.claim(made.sticker.encode())
    assert not info.pin_enabled and info.pin is None and "not enabled" in info.message.lower()
    phone = await bed.phone()
    connected = await troubleshooting.connect(phone, owner, made.serial)  # Just Works
    result = await owner_actions.apply(connected.link, owner, Action.ENABLE_PIN)
    assert result.ok
    assert await connected.link.wait_closed(5.0)
    info = await owner.charger_info(made.serial)
    assert info.pin_enabled and info.pin == daemon.store.current_pin()
    with pytest.raises(PinNeeded):
        await phone.connect(made.serial)
    connected = await troubleshooting.connect(phone, owner, made.serial)
    assert connected.paired_now
    await connected.link.disconnect()


async def test_a_pin_change_whose_receipt_never_reached_the_fleet_is_not_lost(
    bed: Testbed, fleet: LocalFleet
) -> None:
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle)
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    phone = await bed.phone()
    connected = await troubleshooting.connect(phone, owner, made.serial)
    link = connected.link
    # The ticket is applied by the charger, then the app crashes before the receipt is sent.
    ticket = await owner.ticket(
        made.serial, await link.read_challenge(), "change_pin", {"pin": "582913"}
    )
    result = await link.submit_ticket(ticket)
    assert result.ok
    assert str(daemon.store.current_pin()) == "582913"
    await link.disconnect()

    # Next time the app connects it reconciles: the fleet learns which PIN is live.
    connected = await troubleshooting.connect(phone, owner, made.serial)
    reconciled = await owner_actions.reconcile(connected.link, owner)
    assert reconciled["live"] in ("pending", "committed")
    await connected.link.disconnect()
    info = await owner.charger_info(made.serial)
    assert str(info.pin) == "582913"
    # A new phone pairs with the PIN the owner is shown.
    newcomer = await bed.phone("newcomer")
    connected = await troubleshooting.connect(newcomer, owner, made.serial)
    assert connected.paired_now
    await connected.link.disconnect()


async def test_a_revoked_member_holds_no_pin_the_charger_uses_after_the_owner_changes_it(
    bed: Testbed, fleet: LocalFleet
) -> None:
    """Issue 9: a member harvested the PINs of 1,000 epochs ahead, was revoked, and after the
    owner's "new PIN" (next epoch) and one deliberate wrong pairing the hardened charger used a
    PIN they held. Now the fleet reveals only the epoch the charger attested."""
    [made] = fleet.provision("Pulsar Max", "6.11.2")
    daemon = await bed.install(made.bundle)
    owner = await fleet.account("owner@example.com")
    await owner.claim(made.sticker.encode())
    owner_phone = await bed.phone("owner-phone")
    code = await owner.invite(made.serial, "guest@example.com")
    guest = await fleet.account("guest@example.com")
    await guest.accept(code)
    guest_phone = await bed.phone("guest-phone")
    await (await troubleshooting.connect(guest_phone, guest, made.serial)).link.disconnect()

    harvested: set[Pin] = set()
    epoch = daemon.store.epoch
    for ahead in range(epoch, epoch + 20):
        try:
            harvested.add(await guest.pin_of_epoch(made.serial, ahead))
        except FleetRefused as refused:
            assert refused.status == 409 and "not shown epoch" in refused.detail
    assert harvested == {daemon.store.current_pin()}

    members = await owner.members(made.serial)
    guest_id = next(m["user_id"] for m in members if m["email"] == "guest@example.com")
    await owner.revoke(made.serial, guest_id)
    link = (await troubleshooting.connect(owner_phone, owner, made.serial)).link
    await owner_actions.apply(link, owner, Action.CHANGE_PIN, {"next_epoch": "1"})
    await link.disconnect()
    assert daemon.store.current_pin() not in harvested

    # A deliberate wrong pairing moves the hardened charger on: still no PIN the guest holds.
    stranger_phone = await bed.phone("stranger")
    with pytest.raises(WrongPin):
        await stranger_phone.connect(made.serial, pin=next(iter(harvested)))
    assert daemon.store.current_pin() not in harvested
