"""Brute-force protection through the real stack: 5 wrong PINs in a minute lock for 5 minutes."""

from __future__ import annotations

import pytest
from bumble import smp

from chargepin.clock import FakeClock
from chargepin.core.pin import Pin
from chargepin.lab.central import BareCentral, TypingDelegate
from chargepin.lab.testbed import ChargerSpec, Testbed
from chargepin.phone.client import Phone
from chargepin.phone.errors import ChargerLocked, WrongPin


def other_than(pin: Pin) -> str:
    return "918273" if str(pin) != "918273" else "827364"


async def fail(phone: Phone, daemon_pin: Pin) -> WrongPin:
    with pytest.raises(WrongPin) as failure:
        await phone.connect("CP-0001", pin=other_than(daemon_pin))
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
