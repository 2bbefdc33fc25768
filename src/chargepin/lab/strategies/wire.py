"""The core wire formats (docs/PROTOCOL.md): info, advertising payload, status, control,
admin result. Valid encodings, mutations of them and raw bytes, checked against the decoders."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hypothesis import strategies as st

from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
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
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.oracle import outcome

V = TypeVar("V", OpenInfo, AdvertPayload, ChargerStatus, ControlCommand, AdminResult)


def _wire_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text of at most 255 UTF-8 octets: what one length-prefixed string field holds."""
    return st.text(max_size=max_size).filter(lambda text: len(text.encode()) <= 255)


U8 = st.integers(0, 0xFF)
U32 = st.integers(0, 0xFFFF_FFFF)
INFO_FLAGS = U8.map(InfoFlag)

CHARGER_INFOS = st.builds(
    OpenInfo,
    serial=_wire_text(),
    model=_wire_text(),
    firmware=_wire_text(),
    pin_mode=st.sampled_from(PinModeCode),
    flags=INFO_FLAGS,
    epoch=U32,
    retry_after=U32,
    fingerprint=st.binary(min_size=FINGERPRINT_SIZE, max_size=FINGERPRINT_SIZE),
)
ADVERT_PAYLOADS = st.builds(AdvertPayload, serial=_wire_text(), flags=INFO_FLAGS, epoch=U32)
STATUSES = st.builds(
    ChargerStatus,
    state=st.sampled_from(ChargingState),
    current_limit=U8,
    cable_locked=st.booleans(),
    energy_wh=U32,
)
CONTROL_COMMANDS = st.one_of(
    st.sampled_from([ControlCommand(op) for op in ControlOp if op != ControlOp.SET_CURRENT_LIMIT]),
    st.integers(MIN_CURRENT_A, MAX_CURRENT_A).map(
        lambda amps: ControlCommand(ControlOp.SET_CURRENT_LIMIT, amps)
    ),
)


def _admin_results(detail: st.SearchStrategy[str]) -> st.SearchStrategy[AdminResult]:
    return st.builds(
        AdminResult,
        ok=st.booleans(),
        action=_wire_text(20),
        reason=_wire_text(20),
        detail=detail,
        receipt=st.binary(max_size=255),
        phones=st.lists(_wire_text(20), max_size=8).map(tuple),
    )


ADMIN_RESULTS = _admin_results(_wire_text(60))
ADMIN_RESULTS_LONG_DETAIL = _admin_results(st.text(min_size=100, max_size=400))
"""The charger truncates the detail to fit its length octet (AdminResult.encode): a refusal's
detail quotes what the phone wrote, so any text must encode."""


@dataclass(frozen=True)
class WireCase(Generic[V]):
    """Bytes for a decoder and, when they are an unaltered encoding, the value they encode."""

    data: bytes
    value: V | None = None


def wire_cases(values: st.SearchStrategy[V], max_size: int = 600) -> st.SearchStrategy[WireCase[V]]:
    """Encodings of valid values, mutations of them, and raw bytes."""
    valid = values.map(lambda value: WireCase(value.encode(), value))
    altered = values.flatmap(lambda value: mutations(value.encode())).map(WireCase[V])
    raw = st.binary(max_size=max_size).map(WireCase[V])
    return st.one_of(valid, altered, raw)


def exact_wire(data: bytes, encoded: bytes) -> bool:
    return data == encoded


def prefix_wire(data: bytes, encoded: bytes) -> bool:
    """Trailing octets are left for later versions of the format (info, advertisement)."""
    return data.startswith(encoded)


def status_wire(data: bytes, encoded: bytes) -> bool:
    """Exact, except that any non-zero cable octet reads as locked."""
    return (
        len(data) == len(encoded)
        and data[:2] + data[3:] == encoded[:2] + encoded[3:]
        and bool(data[2]) == bool(encoded[2])
    )


def check_decoder(
    decode: Callable[[bytes], V], same_wire: Callable[[bytes, bytes], bool]
) -> Callable[[WireCase[V]], None]:
    """A check that `decode` reads valid encodings back, refuses the rest with ProtocolError,
    and that what it accepts is what the input says (`same_wire(data, value.encode())`)."""

    def check(case: WireCase[V]) -> None:
        decoded = outcome(lambda: decode(case.data), ProtocolError)
        if case.value is not None:
            assert decoded == case.value, f"{case.value!r} decoded as {decoded!r}"
        if not isinstance(decoded, ProtocolError):
            encoded = outcome(decoded.encode, ProtocolError)
            assert not isinstance(encoded, ProtocolError), f"decoded {decoded!r} does not encode"
            assert same_wire(case.data, encoded), f"{case.data.hex()} read as {decoded!r}"
            assert decode(encoded) == decoded, f"{decoded!r} does not survive a round trip"

    return check


def check_admin_result_encoding(result: AdminResult) -> None:
    """Any admin result the charger builds encodes; a long detail is cut, the rest is kept."""
    encoded = outcome(result.encode, ProtocolError)
    assert not isinstance(encoded, ProtocolError), f"{encoded}"
    decoded = outcome(lambda: AdminResult.decode(encoded), ProtocolError)
    assert not isinstance(decoded, ProtocolError), f"{result!r} does not decode: {decoded}"
    assert dataclasses.replace(decoded, detail=result.detail) == result
    assert result.detail.startswith(decoded.detail)
    assert len(decoded.detail.encode()) <= 255
