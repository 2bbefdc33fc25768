"""Writes to every attribute of the charger's GATT table, and the answers docs/PROTOCOL.md
allows for each. The radio harness that makes them is `chargepin.lab.fuzz.Air`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bumble import att, gatt
from hypothesis import strategies as st

from chargepin.core import protocol
from chargepin.core.presence import NONCE_SIZE
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    ChargerStatus,
    ChargingState,
    ControlOp,
)
from chargepin.lab.raw_gatt import GattTable

MAX_ATT_VALUE = 512
"""Core spec Vol 3 Part F 3.2.9: no attribute value is longer; Bumble refuses longer writes."""
NOTIFY_ON = b"\x01\x00"
NOTIFY_OFF = b"\x00\x00"
INDICATE_ON = b"\x02\x00"


def control_oracle(status: ChargerStatus, value: bytes) -> ChargerStatus | None:
    """What one control write must do to `status` (docs/PROTOCOL.md); None: refuse it."""
    if len(value) == 2 and value[0] == ControlOp.SET_CURRENT_LIMIT:
        if MIN_CURRENT_A <= value[1] <= MAX_CURRENT_A:
            return dataclasses.replace(status, current_limit=value[1])
        return None
    if len(value) != 1:
        return None
    op = value[0]
    if op == ControlOp.START:
        # IEC 61851: the connector stays locked for the whole charging session.
        return dataclasses.replace(status, state=ChargingState.CHARGING, cable_locked=True)
    if op == ControlOp.STOP:
        return dataclasses.replace(status, state=ChargingState.IDLE)
    if op == ControlOp.LOCK_CABLE:
        return dataclasses.replace(status, cable_locked=True)
    if op == ControlOp.UNLOCK_CABLE:
        if status.state is ChargingState.CHARGING:
            return None
        return dataclasses.replace(status, cable_locked=False)
    return None


def junk_tickets(serial: str) -> st.SearchStrategy[bytes]:
    """Bytes for the ticket opener: anything, anything behind this charger's header or behind
    a header naming another charger (any text, and long non-ASCII text: the refusal quotes
    it, and must still fit the admin result)."""
    encoded = serial.encode()
    header = bytes([1, len(encoded)]) + encoded
    letters = st.characters(min_codepoint=0x800, max_codepoint=0xFFFF, categories=["L"])
    foreign = (
        st.one_of(st.text(min_size=1, max_size=120), st.text(letters, min_size=40, max_size=85))
        .map(str.encode)
        .filter(lambda raw: len(raw) < 256)
    )
    return st.one_of(
        st.binary(max_size=600),
        st.binary(max_size=600 - len(header)).map(lambda tail: header + tail),
        st.binary(min_size=1, max_size=40).map(lambda tail: bytes([1]) + tail),
        st.tuples(foreign, st.binary(min_size=28, max_size=80)).map(
            lambda item: bytes([1, len(item[0])]) + item[0] + item[1]
        ),
    )


CONTROL_VALUES = st.one_of(
    st.binary(max_size=600),
    st.binary(min_size=1, max_size=2),
    st.integers(0, 255).map(lambda amps: bytes([ControlOp.SET_CURRENT_LIMIT, amps])),
    st.sampled_from([bytes([op]) for op in ControlOp]),
)
CCCD_VALUES = st.one_of(
    st.binary(max_size=600),
    st.binary(min_size=2, max_size=2),
    st.sampled_from([NOTIFY_ON, NOTIFY_OFF, INDICATE_ON]),
)

OWNER = "owner"
"""A phone paired with the PIN, on an encrypted link."""
STRANGER = "stranger"
"""A central that connected and discovered the table, nothing more (no pairing)."""


@dataclass(frozen=True)
class GattWrite:
    """One write from `central` to the attribute at `handle` (`name` says which it is),
    made while the charger is charging or idle."""

    central: str
    handle: int
    name: str
    value: bytes
    with_response: bool = True
    charging: bool = False


def gatt_writes(table: GattTable, serial: str, mtu: int) -> st.SearchStrategy[GattWrite]:
    """Writes to every attribute of `table`, each with the values that reach its code paths.

    Write Commands carry at most MTU - 3 octets (Core spec Vol 3 Part F 3.4.5.3).
    """
    special = {
        table.value(protocol.ADMIN_UUID).handle: junk_tickets(serial),
        table.value(protocol.CONTROL_UUID).handle: CONTROL_VALUES,
        # Nonces (16 octets) and everything around them.
        table.value(protocol.PRESENCE_UUID).handle: st.one_of(
            st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), st.binary(max_size=64)
        ),
    }
    for handle in table.writable_by_design():
        special.setdefault(handle, CCCD_VALUES)

    writable = [a for a in table.attributes if a.handle in special]
    # Half the writes go to the writable attributes, where the code paths are.
    attributes = st.one_of(st.sampled_from(writable), st.sampled_from(table.attributes))

    @st.composite
    def writes(draw: st.DrawFn) -> GattWrite:
        attribute = draw(attributes, label="attribute")
        value = draw(special.get(attribute.handle, st.binary(max_size=600)), label="value")
        with_response = draw(st.booleans(), label="with response")
        if not with_response:
            value = value[: mtu - 3]
        return GattWrite(
            draw(st.sampled_from([OWNER, STRANGER]), label="central"),
            attribute.handle,
            str(attribute.type),
            value,
            with_response,
            draw(st.booleans(), label="charging"),
        )

    return writes()


def expected_answers(
    table: GattTable, write: GattWrite, status: ChargerStatus
) -> frozenset[int | None]:
    """The ATT answers docs/PROTOCOL.md allows for `write` (None: Write Response)."""
    codes = att.ErrorCode
    if len(write.value) > MAX_ATT_VALUE:
        return frozenset({codes.INVALID_ATTRIBUTE_LENGTH})
    owner = write.central == OWNER
    bad_cccd = frozenset({codes.INVALID_ATTRIBUTE_LENGTH, codes.VALUE_NOT_ALLOWED})
    status_cccd = table.cccd_of(table.value(protocol.STATUS_UUID)).handle
    service_changed = table.cccd_of(table.value(gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC)).handle
    if write.handle == service_changed:
        return frozenset({None}) if write.value in (NOTIFY_OFF, INDICATE_ON) else bad_cccd
    if write.handle == status_cccd:
        valid = write.value in (NOTIFY_ON, NOTIFY_OFF)
        if owner:
            return frozenset({None}) if valid else bad_cccd
        # The value is checked before the link: a stranger learns only that it is malformed.
        no_encryption = frozenset({codes.INSUFFICIENT_ENCRYPTION})
        return no_encryption if valid else bad_cccd | no_encryption
    if write.handle == table.value(protocol.ADMIN_UUID).handle:
        # Unpaired links may write an admit_pairing ticket, so junk from the stranger is opened
        # (and refused) too; a valid ticket of another action would get 0x0F.
        return frozenset({protocol.AttAppError.TICKET_REJECTED})
    if write.handle == table.value(protocol.PRESENCE_UUID).handle:
        # Open to any link (issue 9.8): a nonce is 16 octets, anything else is refused.
        if len(write.value) == NONCE_SIZE:
            return frozenset({None})
        return frozenset({codes.INVALID_ATTRIBUTE_LENGTH})
    if write.handle == table.value(protocol.CONTROL_UUID).handle:
        if not owner:
            return frozenset({codes.INSUFFICIENT_ENCRYPTION})
        if control_oracle(status, write.value) is None:
            return frozenset({protocol.AttAppError.BAD_COMMAND})
        return frozenset({None})
    return frozenset({codes.WRITE_NOT_PERMITTED})
