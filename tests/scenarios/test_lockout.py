"""Brute-force protection through the real stack: 5 wrong PINs in a minute lock for 5 minutes."""

from __future__ import annotations

import pytest
from bumble import smp

from chargepin.clock import FakeClock
from chargepin.core.pin import Pin
from chargepin.core.tickets import Action
from chargepin.lab.central import BareCentral, TypingDelegate
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.client import Phone
from chargepin.phone.errors import AccessDenied, AdminRefused, ChargerLocked, WrongPin
from tests.helpers.pins import wrong_pin


async def fail(phone: Phone, daemon_pin: Pin) -> WrongPin:
    with pytest.raises(WrongPin) as failure:
        await phone.connect("CP-0001", pin=wrong_pin(daemon_pin))
    return failure.value


async def test_five_wrong_pins_in_a_minute_lock_new_pairings_for_five_minutes(
    bed: Testbed, clock: FakeClock
) -> None:
    daemon = await bed.charger()
    owner = await bed.phone("owner")
    link = await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    stranger = await bed.phone("stranger")
    for attempt in range(1, 6):
        clock.advance(10)
        failure = await fail(stranger, daemon.store.current_pin())
        assert (failure.locked_for > 0) == (attempt == 5)
    assert failure.locked_for == pytest.approx(300, abs=1)

    # The 6th attempt is refused with SMP Repeated Attempts before any passkey round.
    epoch = daemon.store.epoch
    with pytest.raises(ChargerLocked) as locked:
        await stranger.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert 299 <= locked.value.retry_after <= 300
    assert daemon.store.epoch == epoch
    [found] = await stranger.scan(1.0, until=lambda c: c.serial == "CP-0001")
    assert found.locked

    # Hardened scope is "pairing": the owner's bonded phone is still served.
    link = await owner.connect("CP-0001")
    assert not link.paired_now
    await link.start_charging()
    await link.disconnect()

    # The lock ends on time, not before.
    clock.advance(299)
    with pytest.raises(ChargerLocked):
        await stranger.connect("CP-0001", pin=str(daemon.store.current_pin()))
    clock.advance(2)
    link = await stranger.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert link.paired_now
    await link.disconnect()


async def test_failures_spread_over_more_than_a_minute_do_not_lock(
    bed: Testbed, clock: FakeClock
) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    for _ in range(4):
        await fail(phone, daemon.store.current_pin())
    clock.advance(61)
    failure = await fail(phone, daemon.store.current_pin())
    assert failure.locked_for == 0
    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()


async def test_lockout_survives_a_daemon_restart(bed: Testbed, clock: FakeClock) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    for _ in range(5):
        await fail(phone, daemon.store.current_pin())
    clock.advance(100)
    daemon = await bed.restart(daemon)
    with pytest.raises(ChargerLocked) as locked:
        await phone.connect("CP-0001", pin=str(daemon.store.current_pin()))
    assert 199 <= locked.value.retry_after <= 200


async def test_hardened_lockouts_within_a_day_double(bed: Testbed, clock: FakeClock) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    expected = [300, 600, 1200]
    for duration in expected:
        for _ in range(5):
            failure = await fail(phone, daemon.store.current_pin())
        assert failure.locked_for == pytest.approx(duration, abs=1)
        clock.advance(duration + 1)


async def test_classic_profile_locks_everything_and_never_grows(
    bed: Testbed, clock: FakeClock
) -> None:
    daemon = await bed.charger(ChargerSpec(profile="classic"))
    owner = await bed.phone("owner")
    link = await owner.connect("CP-0001", pin=str(daemon.store.current_pin()))
    await link.disconnect()
    stranger = await bed.phone("stranger")
    for _ in range(5):
        failure = await fail(stranger, daemon.store.current_pin())
    assert failure.locked_for == pytest.approx(300, abs=1)
    # Scope "all": the bonded owner reconnects, but nothing protected is served.
    link = await owner.connect("CP-0001")
    with pytest.raises(ChargerLocked):
        await link.status()
    await link.disconnect()
    clock.advance(301)
    for _ in range(5):
        failure = await fail(stranger, daemon.store.current_pin())
    assert failure.locked_for == pytest.approx(300, abs=1)


async def test_locked_charger_answers_repeated_attempts_to_any_central(
    bed: Testbed, clock: FakeClock
) -> None:
    daemon = await bed.charger()
    phone = await bed.phone()
    for _ in range(5):
        await fail(phone, daemon.store.current_pin())
    central = BareCentral(bed.radio)
    await central.start()
    central.delegate = TypingDelegate(daemon.store.current_pin().passkey)
    connection = await central.connect(daemon)
    assert await central.pair(connection) == smp.ErrorCode.REPEATED_ATTEMPTS
    assert await central.wait_disconnected(connection)
    assert daemon.store.keystore.list_bonds() == []
    await central.stop()


async def test_a_members_new_phone_is_admitted_past_the_lock(
    bed: Testbed, clock: FakeClock
) -> None:
    """A stranger keeping new pairings locked must not shut out a member's new phone: with an
    ADMIT_PAIRING ticket (the fleet gives members one) it pairs during the lock."""
    daemon = await bed.charger()
    authority = bed.authority(daemon)
    stranger = await bed.phone("stranger")
    for _ in range(5):
        await fail(stranger, daemon.store.current_pin())
    invited = await bed.phone("invited")
    with pytest.raises(ChargerLocked):  # without a ticket: locked like anyone
        await invited.connect("CP-0001", pin=str(daemon.store.current_pin()))

    async def admission(challenge: bytes) -> bytes:
        return authority.ticket(challenge, Action.ADMIT_PAIRING)

    link = await invited.connect("CP-0001", pin=str(daemon.store.current_pin()), admit=admission)
    assert link.paired_now
    await link.start_charging()
    await link.disconnect()
    assert daemon.store.lockout_state.locked_until is not None  # the lock still holds for others
    with pytest.raises(ChargerLocked):
        await stranger.connect("CP-0001", pin=str(daemon.store.current_pin()))


async def test_admission_is_no_way_around_the_pin_or_the_count(
    bed: Testbed, clock: FakeClock
) -> None:
    """An admitted link still needs the PIN, its failures count and move the epoch, and an
    admission ticket is single-use, for this charger, and gives nothing else on an unpaired link."""
    daemon = await bed.charger()
    authority = bed.authority(daemon)
    phone = await bed.phone("member")
    for _ in range(5):
        await fail(phone, daemon.store.current_pin())
    failures = daemon.store.counters().get("pairing_failed", 0)
    epoch = daemon.store.epoch

    async def admission(challenge: bytes) -> bytes:
        return authority.ticket(challenge, Action.ADMIT_PAIRING)

    with pytest.raises(WrongPin):
        await phone.connect("CP-0001", pin=wrong_pin(daemon.store.current_pin()), admit=admission)
    assert daemon.store.counters()["pairing_failed"] == failures + 1
    assert daemon.store.epoch == epoch + 1

    # Any other ticket on an unpaired link is refused as before, and applies nothing.
    async def enable(challenge: bytes) -> bytes:
        return authority.ticket(challenge, Action.DISABLE_PIN)

    with pytest.raises(AccessDenied):
        await phone.connect("CP-0001", pin=str(daemon.store.current_pin()), admit=enable)
    assert daemon.store.pin_enabled

    # Replayed: the challenge was used up.
    captured: list[bytes] = []

    async def capture(challenge: bytes) -> bytes:
        captured.append(authority.ticket(challenge, Action.ADMIT_PAIRING))
        return captured[-1]

    link = await phone.connect("CP-0001", pin=str(daemon.store.current_pin()), admit=capture)
    await link.disconnect()
    await phone.forget(link.address)

    async def replay(_challenge: bytes) -> bytes:
        return captured[0]

    with pytest.raises(AdminRefused):
        await phone.connect("CP-0001", pin=str(daemon.store.current_pin()), admit=replay)
