"""Owner actions over Bluetooth with fleet-signed tickets: enable, change, disable, remove."""

from __future__ import annotations

import pytest

from chargepin.core.pin import generate_pin
from chargepin.core.tickets import Action, issue_ticket, seal_ticket, verify_receipt
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.errors import AdminRefused, PinNeeded

OPTIONAL = ChargerSpec(model="Pulsar Plus", firmware="6.8.0")  # PIN off from the factory


async def test_enabling_the_pin_interrupts_the_link_and_the_next_connection_needs_it(
    bed: Testbed,
) -> None:
    daemon = await bed.charger(OPTIONAL)
    phone = await bed.phone()
    authority = bed.authority(daemon)
    link = await phone.connect("CP-0001")  # PIN off: Just Works
    assert link.paired_now and not link.info.pin_enabled
    [bond] = daemon.store.keystore.list_bonds()
    assert not bond.authenticated

    result = await link.submit_ticket(await authority.authorise(link, Action.ENABLE_PIN))
    receipt = verify_receipt(daemon.store.secret, "CP-0001", result.receipt)
    assert receipt.pin_enabled and receipt.action is Action.ENABLE_PIN
    assert await link.wait_closed(5.0)
    # The Just Works bond could be anybody's: it is gone, and the PIN is now asked.
    assert daemon.store.keystore.list_bonds() == []
    with pytest.raises(PinNeeded):
        await phone.connect("CP-0001")
    info = await phone.read_info("CP-0001")
    link = await phone.connect("CP-0001", pin=str(authority.pin_of_epoch(info.epoch)))
    assert link.paired_now
    await link.disconnect()


async def test_a_stranger_cannot_set_a_pin_on_a_charger_that_has_none(bed: Testbed) -> None:
    daemon = await bed.charger(OPTIONAL)
    stranger = await bed.phone()
    link = await stranger.connect("CP-0001")
    challenge = await link.read_challenge()
    forged = seal_ticket(
        bytes(32), issue_ticket("CP-0001", challenge, Action.ENABLE_PIN, {"pin": "582913"}, 0)
    )
    with pytest.raises(AdminRefused) as refused:
        await link.submit_ticket(forged)
    assert refused.value.reason == "tampered"
    assert not daemon.store.pin_enabled
    await link.disconnect()


async def test_changing_the_pin_keeps_bonded_phones(bed: Testbed) -> None:
    daemon = await bed.charger()
    owner, invited, newcomer = [await bed.phone(n) for n in ("owner", "invited", "new")]
    authority = bed.authority(daemon)
    old_pin = str(daemon.store.current_pin())
    await (await invited.connect("CP-0001", pin=old_pin)).disconnect()
    link = await owner.connect("CP-0001", pin=old_pin)
    new_pin = generate_pin()
    ticket = await authority.authorise(link, Action.CHANGE_PIN, {"pin": str(new_pin)})
    result = await link.submit_ticket(ticket)
    assert verify_receipt(daemon.store.secret, "CP-0001", result.receipt).bonds_removed == 0
    assert daemon.store.current_pin() == new_pin
    await link.status()  # not interrupted
    await link.disconnect()
    link = await invited.connect("CP-0001")
    assert not link.paired_now
    await link.disconnect()
    with pytest.raises(PinNeeded):
        await newcomer.connect("CP-0001")
    await (await newcomer.connect("CP-0001", pin=str(new_pin))).disconnect()


async def test_changing_to_the_next_epoch_and_forgetting_all_phones(bed: Testbed) -> None:
    daemon = await bed.charger()
    owner, invited = await bed.phone("owner"), await bed.phone("invited")
    authority = bed.authority(daemon)
    pin = str(daemon.store.current_pin())
    await (await invited.connect("CP-0001", pin=pin)).disconnect()
    link = await owner.connect("CP-0001", pin=pin)
    ticket = await authority.authorise(
        link, Action.CHANGE_PIN, {"next_epoch": "1", "forget_bonds": "1"}
    )
    result = await link.submit_ticket(ticket)
    receipt = verify_receipt(daemon.store.secret, "CP-0001", result.receipt)
    assert receipt.epoch == 1 and receipt.bonds_removed == 2
    assert await link.wait_closed(5.0)
    assert daemon.store.keystore.list_bonds() == []
    with pytest.raises(PinNeeded):
        await invited.connect("CP-0001")
    link = await invited.connect("CP-0001", pin=str(authority.pin_of_epoch(1)))
    await link.disconnect()


async def test_the_pin_can_be_switched_off_only_on_the_optional_class(bed: Testbed) -> None:
    mandatory = await bed.charger()
    phone = await bed.phone()
    authority = bed.authority(mandatory)
    link = await phone.connect("CP-0001", pin=str(mandatory.store.current_pin()))
    with pytest.raises(AdminRefused) as refused:
        await link.submit_ticket(await authority.authorise(link, Action.DISABLE_PIN))
    assert refused.value.reason == "not_allowed"
    assert mandatory.store.pin_enabled
    await link.disconnect()

    optional = await bed.charger(
        ChargerSpec(serial="CP-0002", model="Pulsar Plus", firmware="6.8.0", pin_enabled=True),
        name="optional",
    )
    authority = bed.authority(optional)
    link = await phone.connect("CP-0002", pin=str(optional.store.current_pin()))
    with pytest.raises(AdminRefused, match=r"firmware 6\.11"):
        await link.submit_ticket(
            await authority.authorise(link, Action.CHANGE_PIN, {"next_epoch": "1"})
        )
    result = await link.submit_ticket(await authority.authorise(link, Action.DISABLE_PIN))
    assert not verify_receipt(optional.store.secret, "CP-0002", result.receipt).pin_enabled
    assert not optional.store.pin_enabled
    await link.disconnect()


async def test_paired_phones_are_listed_and_a_removed_phone_must_pair_again(
    bed: Testbed,
) -> None:
    daemon = await bed.charger()
    owner, invited = await bed.phone("owner"), await bed.phone("invited")
    authority = bed.authority(daemon)
    pin = str(daemon.store.current_pin())
    invited_link = await invited.connect("CP-0001", pin=pin)
    link = await owner.connect("CP-0001", pin=pin)
    listed = await link.submit_ticket(await authority.authorise(link, Action.LIST_PHONES))
    owner_address = str(link.connection.self_address)
    invited_address = str(invited_link.connection.self_address)
    assert set(listed.phones) == {owner_address, invited_address}

    ticket = await authority.authorise(link, Action.REMOVE_PHONE, {"address": invited_address})
    result = await link.submit_ticket(ticket)
    assert verify_receipt(daemon.store.secret, "CP-0001", result.receipt).bonds_removed == 1
    assert await invited_link.wait_closed(5.0)
    assert len(daemon.store.keystore.list_bonds()) == 1
    with pytest.raises(PinNeeded):
        await invited.connect("CP-0001")
    await link.status()  # the owner's link is untouched
    await link.disconnect()
