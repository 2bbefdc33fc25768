"""PRODUCT.md's behaviours through the real stack: when the PIN is asked, wrong PINs, bonds."""

from __future__ import annotations

import asyncio

import pytest
from bumble import smp
from bumble.pairing import PairingDelegate

from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PinState
from chargepin.lab.central import BareCentral, TypingDelegate
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.errors import LinkLost, PinNeeded, WrongPin
from tests.helpers.pins import wrong_pin
from tests.helpers.timing import WITHIN, advance_loop_clock


async def test_first_connection_from_a_new_phone_needs_the_pin(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    with pytest.raises(PinNeeded, match="needs its 6-digit PIN"):
        await phone.connect("CP-0001")
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert link.paired_now
    status = await link.status()
    assert status.current_limit == 32
    bonds = daemon.store.keystore.list_bonds()
    assert [b.authenticated for b in bonds] == [True]
    await link.disconnect()


async def test_bonded_phone_reconnects_without_the_pin(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()

    def no_pin_expected(_info: object) -> None:
        raise AssertionError("a bonded phone must not be asked for the PIN")

    link = await phone.connect("CP-0001", pin=no_pin_expected)  # type: ignore[arg-type]
    assert not link.paired_now
    assert (await link.start_charging()).cable_locked
    await link.disconnect()


async def test_daemon_restart_keeps_bonds(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    await bed.restart(daemon)
    link = await phone.connect("CP-0001")
    assert not link.paired_now
    await link.status()
    await link.disconnect()


async def test_phone_that_forgot_the_charger_is_asked_again(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    address = link.address
    await link.disconnect()
    assert await phone.forget(address)
    with pytest.raises(PinNeeded):
        await phone.connect("CP-0001")
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert link.paired_now  # the charger accepted re-pairing and replaced the key
    assert len(daemon.store.keystore.list_bonds()) == 1
    await link.disconnect()


async def test_charger_that_forgot_the_phone_asks_for_the_pin_again(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    await daemon.store.keystore.delete_all()  # e.g. a factory reset of the bonds
    with pytest.raises(PinNeeded):
        await phone.connect("CP-0001")
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert link.paired_now
    await link.disconnect()


async def test_invited_user_on_another_phone_needs_the_pin(bed: Testbed) -> None:
    daemon = await bed.charger()
    owner = await bed.phone("owner")
    invited = await bed.phone("invited")
    pin = str(daemon.store.current_pin())
    owner_link = await owner.connect("CP-0001", pin=pin)
    with pytest.raises(PinNeeded):
        await invited.connect("CP-0001")
    invited_link = await invited.connect("CP-0001", pin=pin)
    assert invited_link.paired_now
    assert len(daemon.store.keystore.list_bonds()) == 2
    await owner_link.disconnect()
    await invited_link.disconnect()


async def test_wrong_pin_fails_then_the_troubleshooting_pin_works(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    authority = bed.authority(daemon)
    before = daemon.store.epoch
    with pytest.raises(WrongPin) as failure:
        await phone.connect("CP-0001", pin=wrong_pin(daemon.store.current_pin()))
    # Hardened profile: the failed attempt moved the charger to the next PIN epoch.
    assert failure.value.epoch == before + 1 == daemon.store.epoch
    assert failure.value.locked_for == 0
    assert daemon.store.keystore.list_bonds() == []

    async def troubleshooting_screen(info: object) -> Pin:
        return authority.pin_of_epoch(info.epoch)  # type: ignore[attr-defined]

    link = await phone.connect("CP-0001", pin=troubleshooting_screen)
    assert link.paired_now
    assert daemon.store.counters()["pairing_failed"] == 1
    await link.disconnect()


async def test_classic_profile_keeps_the_pin_after_a_failure(bed: Testbed) -> None:
    daemon = await bed.charger(ChargerSpec(profile="classic"))
    phone = await bed.phone()
    pin = daemon.store.current_pin()
    with pytest.raises(WrongPin) as failure:
        await phone.connect("CP-0001", pin=wrong_pin(pin))
    assert failure.value.epoch == 0
    assert daemon.store.current_pin() == pin
    link = await phone.connect("CP-0001", pin=str(pin))
    await link.disconnect()


async def test_info_and_advertisement_tell_epoch_and_fingerprint(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    secret = daemon.store.secret
    info = await phone.read_info("CP-0001")
    assert (info.serial, info.model, info.firmware) == ("CP-0001", "Pulsar Max", "6.11.2")
    assert info.pin_enabled and not info.locked and info.epoch == 0
    assert info.fingerprint == pin_fingerprint(secret, "CP-0001", epoch_pin(secret, "CP-0001", 0))
    [found] = await phone.scan(1.0, until=lambda c: c.serial == "CP-0001")
    assert found.pin_enabled and found.epoch == 0 and not found.locked


async def test_custom_pin_stays_until_the_first_failure(bed: Testbed) -> None:
    daemon = await bed.charger()
    daemon.store.save_pin_state(PinState(True, 0, Pin("482915")))
    phone = await bed.phone()
    with pytest.raises(WrongPin):
        await phone.connect("CP-0001", pin="190283")
    assert daemon.store.custom_pin is None
    assert daemon.store.current_pin() == epoch_pin(daemon.store.secret, "CP-0001", 1)


# ---------------------------------------------------------------- any standard central


async def test_a_standard_central_pairs_with_no_app_specific_step(bed: Testbed) -> None:
    """A phone's own pairing dialog: KeyboardDisplay, LE SC, no GATT access before pairing."""
    daemon = await bed.charger()
    central = BareCentral(bed.radio)
    await central.start()
    central.delegate = TypingDelegate(daemon.store.current_pin().passkey)
    connection = await central.connect(daemon)
    assert await central.pair(connection) is None
    [bond] = daemon.store.keystore.list_bonds()
    assert bond.authenticated
    await central.stop()


@pytest.mark.parametrize(
    ("io", "sc"),
    [
        (PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT, True),  # Just Works
        (PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_YES_NO_INPUT, True),  # Just Works too
        (PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY, False),  # legacy passkey
    ],
)
async def test_pairing_without_passkey_entry_over_sc_is_refused(
    bed: Testbed, io: PairingDelegate.IoCapability, sc: bool
) -> None:
    daemon = await bed.charger()
    central = BareCentral(bed.radio)
    await central.start()
    central.delegate = TypingDelegate(daemon.store.current_pin().passkey, io=io)
    central.sc = sc
    connection = await central.connect(daemon)
    assert await central.pair(connection) == smp.ErrorCode.AUTHENTICATION_REQUIREMENTS
    assert await central.wait_disconnected(connection)
    assert daemon.store.keystore.list_bonds() == []
    # Nothing was guessed: no lockout count, no epoch move.
    assert daemon.store.lockout_state.failures == ()
    assert daemon.store.epoch == 0
    await central.stop()


async def test_cancelled_passkey_entry_counts_and_rotates(bed: Testbed) -> None:
    daemon = await bed.charger()
    central = BareCentral(bed.radio)
    await central.start()
    central.delegate = TypingDelegate(None)  # the user pressed Cancel
    connection = await central.connect(daemon)
    assert await central.pair(connection) == smp.ErrorCode.PASSKEY_ENTRY_FAILED
    assert await central.wait_disconnected(connection)
    assert len(daemon.store.lockout_state.failures) == 1
    assert daemon.store.epoch == 1
    await central.stop()


async def test_hanging_up_in_the_middle_of_passkey_entry_counts(bed: Testbed) -> None:
    daemon = await bed.charger()
    central = BareCentral(bed.radio)
    await central.start()
    typing = central.delegate = TypingDelegate(123456, hold=asyncio.Event())
    connection = await central.connect(daemon)
    pairing = asyncio.ensure_future(central.pair(connection))
    await typing.asked.wait()
    assert daemon.info().busy
    await connection.disconnect()
    pairing.cancel()
    assert len(daemon.store.lockout_state.failures) == 1
    assert daemon.store.epoch == 1
    assert not daemon.info().busy
    await central.stop()


async def test_a_second_concurrent_pairing_is_told_busy_and_counted(bed: Testbed) -> None:
    daemon = await bed.charger()
    pin = daemon.store.current_pin().passkey
    first, second = BareCentral(bed.radio, "first"), BareCentral(bed.radio, "second")
    await first.start()
    await second.start()
    release = asyncio.Event()
    first.delegate = TypingDelegate(pin, hold=release)
    second.delegate = TypingDelegate(pin)
    first_link = await first.connect(daemon)
    first_pairing = asyncio.ensure_future(first.pair(first_link))
    await first.delegate.asked.wait()
    second_link = await second.connect(daemon)
    assert await second.pair(second_link) == smp.ErrorCode.UNSPECIFIED_REASON
    assert await second.wait_disconnected(second_link)
    # The busy refusal counts toward the lockout but must not change the PIN being entered.
    assert len(daemon.store.lockout_state.failures) == 1
    assert daemon.store.epoch == 0
    release.set()
    assert await first_pairing is None
    assert len(daemon.store.keystore.list_bonds()) == 1
    await first.stop()
    await second.stop()


async def test_a_stalled_pairing_times_out_as_an_aborted_attempt(bed: Testbed) -> None:
    daemon = await bed.charger()
    smp_timeout = daemon.timings.smp_timeout  # the Core spec's 30 s, on the loop's clock
    central = BareCentral(bed.radio)
    await central.start()
    typing = central.delegate = TypingDelegate(123456, hold=asyncio.Event())  # never types
    connection = await central.connect(daemon)
    # The central gives up long after the charger should have: the drop must be the charger's.
    pairing = asyncio.ensure_future(central.pair(connection, timeout=3 * smp_timeout))
    await asyncio.wait_for(typing.asked.wait(), WITHIN)  # passkey entry: the SMP timer runs
    advance_loop_clock(smp_timeout)
    assert await central.wait_disconnected(connection, timeout=WITHIN)
    pairing.cancel()
    assert len(daemon.store.lockout_state.failures) == 1
    assert daemon.pairing.handle is None
    await central.stop()


async def test_leading_zeros_are_digits_of_the_passkey(bed: Testbed) -> None:
    daemon = await bed.charger()
    daemon.store.save_pin_state(PinState(True, 0, Pin("042917")))
    phone = await bed.phone()
    with pytest.raises(WrongPin):
        await phone.connect("CP-0001", pin="429170")
    daemon.store.save_pin_state(PinState(True, daemon.store.epoch, Pin("042917")))
    link = await phone.connect("CP-0001", pin="042917")
    assert link.paired_now
    await link.disconnect()


async def test_a_link_lost_mid_request_is_an_error_the_app_can_act_on(bed: Testbed) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    read = asyncio.ensure_future(link.status())
    await asyncio.sleep(0)  # the read request is on its way
    for connection in list(daemon.device.connections.values()):
        await connection.disconnect()
    with pytest.raises(LinkLost, match="connect again"):
        await read


async def test_a_phone_with_private_addresses_is_recognised_by_its_identity(
    bed: Testbed,
) -> None:
    """Real phones connect from resolvable private addresses, never their identity address."""
    daemon = await bed.charger()
    phone = await bed.phone(privacy=True)
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert phone.device.random_address.is_resolvable
    [bond] = daemon.store.keystore.list_bonds()
    assert bond.address == str(phone.device.static_address)
    await link.disconnect()
    assert await phone.device.update_rpa()
    link = await phone.connect("CP-0001")
    assert not link.paired_now  # resolved to the bonded identity: no PIN
    [connection] = daemon.device.connections.values()
    assert connection.peer_resolvable_address is not None
    assert str(connection.peer_address) == bond.address
    await link.status()
    await link.disconnect()


async def test_a_charger_holding_another_key_for_the_phone_is_a_clear_error(
    bed: Testbed,
) -> None:
    """The charger drops the link on the MIC failure; Bumble cancels the encryption request.
    That must reach the app as LinkLost saying what to do, not as a stray cancellation."""
    daemon = await bed.charger()
    phone = await bed.phone()
    await (await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))).disconnect()
    [(name, keys)] = await daemon.store.keystore.get_all()
    assert keys.ltk is not None
    keys.ltk.value = bytes(16)  # e.g. a pairing the charger never stored, or a restored backup
    await daemon.store.keystore.update(name, keys)
    with pytest.raises(LinkLost, match="forget the charger on this phone and pair again"):
        await phone.connect("CP-0001")
    await phone.forget(daemon.address)
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert link.paired_now
    await link.disconnect()
