"""The GATT and advertising formats: round trips, and clear errors for anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core.protocol import (
    AdminResult,
    AdvertPayload,
    ChargerStatus,
    ChargingState,
    ControlCommand,
    ControlOp,
    InfoFlag,
    OpenInfo,
    PinModeCode,
    ProtocolError,
)

INFO = OpenInfo(
    serial="CP-0001",
    model="Pulsar Max",
    firmware="6.11.2",
    pin_mode=PinModeCode.MANDATORY,
    flags=InfoFlag.PIN_ENABLED | InfoFlag.HARDENED,
    epoch=7,
    retry_after=0,
    fingerprint=bytes(range(8)),
)


def test_info_round_trip_and_layout() -> None:
    raw = INFO.encode()
    assert raw[:3] == bytes([1, 0x09, 2])
    assert raw[3:7] == (7).to_bytes(4, "little")
    assert OpenInfo.decode(raw) == INFO
    assert INFO.pin_enabled and not INFO.locked and not INFO.busy


def test_info_from_a_newer_charger_says_update_the_app() -> None:
    raw = bytearray(INFO.encode())
    raw[0] = 2
    with pytest.raises(ProtocolError, match="update the app"):
        OpenInfo.decode(bytes(raw))


@pytest.mark.parametrize("cut", [0, 5, 19, 20, 25])
def test_truncated_info_is_refused_with_what_is_missing(cut: int) -> None:
    with pytest.raises(ProtocolError):
        OpenInfo.decode(INFO.encode()[:cut])


def test_advert_payload_round_trip_and_foreign_data() -> None:
    payload = AdvertPayload("CP-0001", InfoFlag.LOCKED, 3)
    assert AdvertPayload.decode(payload.encode()) == payload
    with pytest.raises(ProtocolError, match="not a chargepin advertisement"):
        AdvertPayload.decode(b"XX\x01\x00\x00\x00\x00\x00")


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        (b"\x01", ControlCommand(ControlOp.START)),
        (b"\x02", ControlCommand(ControlOp.STOP)),
        (b"\x03\x06", ControlCommand(ControlOp.SET_CURRENT_LIMIT, 6)),
        (b"\x03\x20", ControlCommand(ControlOp.SET_CURRENT_LIMIT, 32)),
        (b"\x05", ControlCommand(ControlOp.UNLOCK_CABLE)),
    ],
)
def test_control_commands_decode(raw: bytes, command: ControlCommand) -> None:
    assert ControlCommand.decode(raw) == command
    assert command.encode() == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\x09", "unknown control opcode 0x09"),
        (b"\x03\x05", "outside 6-32 A"),
        (b"\x03\x21", "outside 6-32 A"),
        (b"\x03", "2 octets"),
        (b"\x01\x00", "takes no argument"),
    ],
)
def test_bad_control_commands_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ControlCommand.decode(raw)


def test_status_round_trip() -> None:
    status = ChargerStatus(ChargingState.CHARGING, 16, True, 12_345)
    assert ChargerStatus.decode(status.encode()) == status
    with pytest.raises(ProtocolError):
        ChargerStatus.decode(b"\x07" + status.encode()[1:])


def test_admin_result_with_a_receipt_fits_one_read_at_mtu_247() -> None:
    result = AdminResult(ok=True, action="change_pin", receipt=bytes(132))
    raw = result.encode()
    assert len(raw) <= 246
    assert AdminResult.decode(raw) == result
    listed = AdminResult(ok=True, action="list_phones", phones=("C0:11:22:33:44:55",) * 3)
    assert AdminResult.decode(listed.encode()) == listed


@given(st.binary(max_size=80))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decoder in (
        OpenInfo.decode,
        AdvertPayload.decode,
        ChargerStatus.decode,
        ControlCommand.decode,
        AdminResult.decode,
    ):
        with contextlib.suppress(ProtocolError):
            decoder(data)
