"""Fuzzing the charger's whole GATT table over the real Bumble stack on the virtual radio.

Acceptance: "hypothesis fuzzing of every writable characteristic and of the ticket opener: no
crash, a clear ATT error, the daemon keeps serving". A phone paired with the PIN writes arbitrary
bytes to the admin point (the ticket opener), the control point, the status CCCD and every
attribute that must stay read-only; each write gets a definite ATT answer, nothing changes that
should not, and a status read still works afterwards.

Hypothesis's @given cannot drive an async test, so each test here is synchronous: the `air`
fixture runs the testbed on its own `asyncio.Runner`, and every example runs one coroutine on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from bumble import att, gatt
from bumble.core import UUID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargepin.core import presence, protocol
from chargepin.core.limits import CHALLENGE_SIZE
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    AdminResult,
    AttAppError,
    ChargerStatus,
    ChargingState,
    ProtocolError,
)
from chargepin.core.tickets import Action
from chargepin.lab.fuzz import Air
from chargepin.lab.raw_gatt import CCCD
from chargepin.lab.strategies import (
    CCCD_VALUES,
    CONTROL_VALUES,
    MAX_ATT_VALUE,
    NOTIFY_OFF,
    NOTIFY_ON,
    TICKET_REASONS_FOR_JUNK,
    control_oracle,
    junk_tickets,
    mutations,
)
from chargepin.radio.link_addresses import self_on_air
from tests.helpers.timing import WITHIN

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ------------------------------------------------------------------------------ the air


@pytest.fixture
def air(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Air]:
    caplog.set_level(logging.ERROR)
    with asyncio.Runner() as runner:
        testbed = Air(runner, tmp_path)
        try:
            testbed.run(testbed.start(), timeout=15.0)
            yield testbed
        finally:
            runner.run(testbed.close())
    # A handler that raises anything but ATT_Error is logged by Bumble and never answered.
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


# ------------------------------------------------------------------------------ admin point


def test_admin_point_refuses_any_junk_and_keeps_serving(air: Air) -> None:
    serial = air.daemon.store.identity.serial
    admin = air.table.value(protocol.ADMIN_UUID)
    result_point = air.table.value(protocol.ADMIN_RESULT_UUID)
    challenge_point = air.table.value(protocol.CHALLENGE_UUID)

    async def example(blob: bytes, read_challenge_first: bool) -> None:
        before = await air.security_state()
        rejected = air.daemon.store.counters()["ticket_rejected"]
        if read_challenge_first:
            challenge = await air.read(challenge_point)
            assert isinstance(challenge, bytes)
            assert len(challenge) == CHALLENGE_SIZE
        code = await air.write(admin, blob)
        if len(blob) > MAX_ATT_VALUE:
            assert code == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
            assert air.daemon.store.counters()["ticket_rejected"] == rejected
        else:
            assert code == AttAppError.TICKET_REJECTED
            raw = await air.read(result_point)
            assert isinstance(raw, bytes), f"admin result read failed with 0x{raw:02X}"
            result = AdminResult.decode(raw)
            assert not result.ok
            assert result.reason in TICKET_REASONS_FOR_JUNK
            assert result.detail
            assert air.daemon.store.counters()["ticket_rejected"] == rejected + 1
        assert await air.security_state() == before
        await air.still_serving()

    @FUZZ
    @given(blob=junk_tickets(serial), read_challenge_first=st.booleans())
    def check(blob: bytes, read_challenge_first: bool) -> None:
        air.run(example(blob, read_challenge_first))

    check()


TICKETS = [
    (Action.LIST_PHONES, None),
    (Action.CHANGE_PIN, {"pin": "385172"}),
    (Action.CHANGE_PIN, {"next_epoch": "1", "forget_bonds": "1"}),
    (Action.DISABLE_PIN, None),
    (Action.REMOVE_PHONE, {"all": "1"}),
]


def test_altered_real_tickets_are_refused_and_the_next_valid_one_works(air: Air) -> None:
    """Tickets sealed by the owner authority for this link's challenge, then altered."""
    admin = air.table.value(protocol.ADMIN_UUID)
    result_point = air.table.value(protocol.ADMIN_RESULT_UUID)

    async def example(index: int, data: st.DataObject) -> None:
        action, args = TICKETS[index]
        before = await air.security_state()
        rejected = air.daemon.store.counters()["ticket_rejected"]
        blob = await air.authority.authorise(air.link, action, args)
        altered = data.draw(mutations(blob), label="altered ticket")
        assert await air.write(admin, altered) == AttAppError.TICKET_REJECTED
        raw = await air.read(result_point)
        assert isinstance(raw, bytes)
        assert AdminResult.decode(raw).reason in TICKET_REASONS_FOR_JUNK
        assert air.daemon.store.counters()["ticket_rejected"] == rejected + 1
        assert await air.security_state() == before
        # The refusal consumed the challenge; a new one and a valid ticket still work.
        listed = await air.link.submit_ticket(
            await air.authority.authorise(air.link, Action.LIST_PHONES)
        )
        assert listed.ok
        assert air.phone_address in listed.phones

    @FUZZ
    @given(index=st.integers(0, len(TICKETS) - 1), data=st.data())
    def check(index: int, data: st.DataObject) -> None:
        air.run(example(index, data))

    check()


# ------------------------------------------------------------------------------ control point


def test_control_point_does_what_valid_commands_say_and_refuses_the_rest(air: Air) -> None:
    control = air.table.value(protocol.CONTROL_UUID)

    async def example(value: bytes) -> None:
        before = await air.security_state()
        status = await air.link.status()
        expected = control_oracle(status, value)
        code = await air.write(control, value)
        if len(value) > MAX_ATT_VALUE:
            assert code == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
        elif expected is None:
            assert code == AttAppError.BAD_COMMAND
        else:
            assert code is None, f"valid command {value.hex()} refused with 0x{code:02X}"
        assert await air.link.status() == (expected or status)
        assert await air.security_state() == before

    @FUZZ
    @given(value=CONTROL_VALUES)
    def check(value: bytes) -> None:
        air.run(example(value))

    check()


def test_control_commands_over_the_air(air: Air) -> None:
    """Start charges, the limit takes 6..32 A, 5 and 33 A are BAD_COMMAND, notifications follow.

    The phone library refuses an out-of-range limit before writing it (ProtocolError, the range
    said); the charger's own refusal of one is checked with the raw write another client could
    send."""
    control = air.table.value(protocol.CONTROL_UUID)

    async def scenario() -> None:
        heard: list[ChargerStatus] = []
        charging = asyncio.Event()

        def on_status(status: ChargerStatus) -> None:
            heard.append(status)
            if status.state is ChargingState.CHARGING:
                charging.set()

        await air.link.subscribe_status(on_status)
        started = await air.link.start_charging()
        assert started.state is ChargingState.CHARGING
        assert started.cable_locked
        await asyncio.wait_for(charging.wait(), WITHIN)
        assert heard[-1] == started
        for amps in range(MIN_CURRENT_A, MAX_CURRENT_A + 1):
            assert (await air.link.set_current_limit(amps)).current_limit == amps
        for amps in (0, MIN_CURRENT_A - 1, MAX_CURRENT_A + 1, 255):
            with pytest.raises(ProtocolError, match=f"{MIN_CURRENT_A}-{MAX_CURRENT_A} A"):
                await air.link.set_current_limit(amps)
            raw = bytes([protocol.ControlOp.SET_CURRENT_LIMIT, amps])
            assert await air.write(control, raw) == AttAppError.BAD_COMMAND
            assert (await air.link.status()).current_limit == MAX_CURRENT_A
        stopped = await air.link.stop_charging()
        assert stopped.state is ChargingState.IDLE

    air.run(scenario())


# ------------------------------------------------------------------------------ status CCCD


def test_status_cccd_takes_only_notify_on_or_off(air: Air) -> None:
    cccd = air.table.cccd_of(air.table.value(protocol.STATUS_UUID))

    async def example(value: bytes) -> None:
        before = await air.read(cccd)
        assert before in (NOTIFY_ON, NOTIFY_OFF)
        code = await air.write(cccd, value)
        if value in (NOTIFY_ON, NOTIFY_OFF):
            assert code is None
            assert await air.read(cccd) == value
        else:
            # Indications (bit 1) are not offered; any other length or bit is not a CCCD value.
            assert code in (att.ErrorCode.VALUE_NOT_ALLOWED, att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
            assert await air.read(cccd) == before
        await air.still_serving()

    @FUZZ
    @given(value=CCCD_VALUES)
    def check(value: bytes) -> None:
        air.run(example(value))

    check()


# ------------------------------------------------------------------------------ presence point


def test_presence_point_proves_any_16_octets_and_refuses_every_other_size(air: Air) -> None:
    """Issue 9.8: a nonce is exactly 16 octets; anything else is refused and leaves no proof
    behind, and every proof verifies for the writer's link only."""
    point = air.table.value(protocol.PRESENCE_UUID)
    serial = air.daemon.store.identity.serial
    address = self_on_air(air.link.connection)

    async def example(value: bytes) -> None:
        code = await air.write(point, value)
        answer = await air.read(point)
        if len(value) == presence.NONCE_SIZE:
            assert code is None and isinstance(answer, bytes)
            proof = presence.PresenceProof.decode(answer)
            state = presence.verify(air.daemon.store.secret, serial, value, address, proof)
            assert state.epoch == air.daemon.store.epoch
        else:
            assert code == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
            assert answer == AttAppError.BAD_COMMAND
        await air.still_serving()

    @FUZZ
    @given(value=st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=600)))
    def check(value: bytes) -> None:
        air.run(example(value))

    check()


# ------------------------------------------------------------------------------ read-only table


def test_gatt_table_has_the_attributes_this_file_fuzzes(air: Air) -> None:
    """Guards the fuzzing below: a table change must be reflected in its lists."""
    types = [a.type for a in air.table.attributes]
    for uuid in (
        protocol.INFO_UUID,
        protocol.CHALLENGE_UUID,
        protocol.ADMIN_UUID,
        protocol.ADMIN_RESULT_UUID,
        protocol.STATUS_UUID,
        protocol.CONTROL_UUID,
        protocol.PRESENCE_UUID,
    ):
        assert types.count(UUID(uuid)) == 1
    assert gatt.GATT_DEVICE_NAME_CHARACTERISTIC in types
    assert gatt.GATT_DATABASE_HASH_CHARACTERISTIC in types
    assert types.count(CCCD) == 2  # Service Changed and status
    assert len(air.table.writable_by_design()) == 5


def test_read_only_attributes_refuse_any_write_and_keep_their_value(air: Air) -> None:
    """GAP name, declarations, Service Changed, info, challenge, status, admin result..."""
    frozen = [a for a in air.table.attributes if a.handle not in air.table.writable_by_design()]
    challenge = air.table.value(protocol.CHALLENGE_UUID).handle

    async def example(index: int, value: bytes) -> None:
        attribute = frozen[index]
        before = await air.read(attribute)
        code = await air.write(attribute, value)
        if len(value) > MAX_ATT_VALUE:
            assert code == att.ErrorCode.INVALID_ATTRIBUTE_LENGTH
        else:
            assert code == att.ErrorCode.WRITE_NOT_PERMITTED, (
                f"handle {attribute.handle} ({attribute.type}) answered {code!r}"
            )
        after = await air.read(attribute)
        if attribute.handle == challenge:
            # Every read hands out a fresh challenge; the write must not have chosen it.
            assert isinstance(after, bytes)
            assert len(after) == CHALLENGE_SIZE
            assert after != value
        else:
            assert after == before
        await air.still_serving()

    @FUZZ
    @given(index=st.integers(0, len(frozen) - 1), value=st.binary(max_size=600))
    def check(index: int, value: bytes) -> None:
        air.run(example(index, value))

    check()


@pytest.mark.parametrize(
    "value",
    [b"", b"\x02", b"\x02\x00\x00", bytes(100), b"\xff\xff", b"\x00\x80"],
    ids=["empty", "one-octet", "three-octets", "100-octets", "all-bits", "reserved-bit"],
)
def test_service_changed_cccd_refuses_malformed_values(air: Air, value: bytes) -> None:
    """Bumble's own CCCD (GATT service) would ignore a value that is not 2 octets and store one
    with reserved bits, answering Write Response to both; gatt_service.harden_server validates
    it like the status CCCD.
    """
    service_changed = air.table.value(gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC)
    cccd = air.table.cccd_of(service_changed)

    async def scenario() -> None:
        before = await air.read(cccd)
        code = await air.write(cccd, value)
        assert await air.read(cccd) == before
        # Either fix will do: validate the value, or freeze it as docs/PROTOCOL.md says.
        assert code in (
            att.ErrorCode.INVALID_ATTRIBUTE_LENGTH,
            att.ErrorCode.VALUE_NOT_ALLOWED,
            att.ErrorCode.WRITE_NOT_PERMITTED,
        )

    air.run(scenario())
