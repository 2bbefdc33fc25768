"""The charger's Bluetooth wire formats: GATT UUIDs, value encodings, advertising payload.

Both sides (charger daemon and phone client) encode and decode through this one module, so the
format documented in docs/PROTOCOL.md has exactly one implementation. Integers are little-endian,
as everywhere in Bluetooth (Core spec Vol 3 Part F 3.2.8: multi-octet fields are LSB first).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from chargepin.core.attestation import ATTESTATION_SIZE, AttestedState
from chargepin.core.errors import ChargepinError
from chargepin.core.limits import MAX_EPOCH, MAX_GENERATION, MAX_STRING_OCTETS

SERVICE_UUID = "4d2c0001-8f4a-4b7e-a3d1-5c9e2b7f6a10"
INFO_UUID = "4d2c0002-8f4a-4b7e-a3d1-5c9e2b7f6a10"
CHALLENGE_UUID = "4d2c0003-8f4a-4b7e-a3d1-5c9e2b7f6a10"
ADMIN_UUID = "4d2c0004-8f4a-4b7e-a3d1-5c9e2b7f6a10"
ADMIN_RESULT_UUID = "4d2c0005-8f4a-4b7e-a3d1-5c9e2b7f6a10"
STATUS_UUID = "4d2c0006-8f4a-4b7e-a3d1-5c9e2b7f6a10"
CONTROL_UUID = "4d2c0007-8f4a-4b7e-a3d1-5c9e2b7f6a10"
BOND_UUID = "4d2c0009-8f4a-4b7e-a3d1-5c9e2b7f6a10"
"""The bond statement (core.bond_statement): readable on an encrypted link with a bond."""
PRESENCE_UUID = "4d2c000a-8f4a-4b7e-a3d1-5c9e2b7f6a10"
"""Open: write the fleet's nonce, read the proof (core.presence; docs/PROTOCOL.md)."""

# Bluetooth SIG company identifier 0xFFFF is reserved for internal use and tests (Assigned
# Numbers 7.1); a vendor shipping this sets its own.
COMPANY_ID = 0xFFFF
ADV_MAGIC = b"CP"
FORMAT_VERSION = 1

MAX_TICKET_SIZE = 512
PREFERRED_MTU = 247


class ProtocolError(ChargepinError, ValueError):
    """Bytes that do not decode as the documented format."""


class AttAppError(enum.IntEnum):
    """Application ATT error codes (Core spec Vol 3 Part F 3.4.1.1: 0x80-0x9F are ours)."""

    TICKET_REJECTED = 0x80
    NOT_ALLOWED = 0x81
    LOCKED = 0x82
    PIN_REQUIRED = 0x83
    BAD_COMMAND = 0x84


class PinModeCode(enum.IntEnum):
    """PIN class on the wire."""

    UNSUPPORTED = 0
    OPTIONAL = 1
    MANDATORY = 2


class InfoFlag(enum.IntFlag):
    """Bits of the info flags octet (also in the advertising payload)."""

    PIN_ENABLED = 0x01
    LOCKED = 0x02
    PAIRING_BUSY = 0x04
    HARDENED = 0x08


def _take_string(data: bytes, offset: int, what: str) -> tuple[str, int]:
    if offset >= len(data):
        raise ProtocolError(f"{what}: length octet missing at offset {offset}")
    length = data[offset]
    end = offset + 1 + length
    if end > len(data):
        raise ProtocolError(f"{what}: needs {length} octets, only {len(data) - offset - 1} left")
    try:
        return data[offset + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as error:
        raise ProtocolError(f"{what} is not UTF-8: {error}") from error


def _check_epoch(epoch: int) -> int:
    """The epoch as it goes on the air (u32), or ProtocolError: it must never wrap around."""
    if not 0 <= epoch <= MAX_EPOCH:
        raise ProtocolError(f"epoch {epoch} does not fit the u32 on the air (0..{MAX_EPOCH})")
    return epoch


def _put_string(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_STRING_OCTETS:
        raise ProtocolError(f"{what} is {len(raw)} octets; at most {MAX_STRING_OCTETS} fit")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class OpenInfo:
    """The open info characteristic: who the charger is and whether a PIN is needed now."""

    serial: str
    model: str
    firmware: str
    pin_mode: PinModeCode
    flags: InfoFlag
    epoch: int
    retry_after: int
    fingerprint: bytes
    attestation: bytes = b""
    """The charger's MAC on (epoch, PIN on/off, fingerprint, generation): core.attestation.
    Empty from a charger that does not attest (the fleet then believes none of it)."""
    generation: int = 0
    """The PIN generation (a re-key moves to the next). On the air after the attestation, as a
    u32 LE, only when it is not 0: a generation-0 charger's info is unchanged."""

    _HEAD = struct.Struct("<BBBII8s")
    _GENERATION = struct.Struct("<I")

    @property
    def state(self) -> AttestedState:
        """What the attestation vouches for."""
        return AttestedState(self.epoch, self.pin_enabled, self.fingerprint, self.generation)

    @property
    def pin_enabled(self) -> bool:
        return InfoFlag.PIN_ENABLED in self.flags

    @property
    def locked(self) -> bool:
        return InfoFlag.LOCKED in self.flags

    @property
    def busy(self) -> bool:
        return InfoFlag.PAIRING_BUSY in self.flags

    def encode(self) -> bytes:
        head = self._HEAD.pack(
            FORMAT_VERSION,
            int(self.flags),
            int(self.pin_mode),
            _check_epoch(self.epoch),
            self.retry_after,
            self.fingerprint,
        )
        if len(self.attestation) not in (0, ATTESTATION_SIZE):
            raise ProtocolError(f"an attestation is {ATTESTATION_SIZE} octets or absent")
        if self.generation and not self.attestation:
            raise ProtocolError("a generation is sent only after an attestation")
        if not 0 <= self.generation <= MAX_GENERATION:
            raise ProtocolError(f"generation {self.generation} does not fit a u32")
        return (
            head
            + _put_string(self.serial, "serial")
            + _put_string(self.model, "model")
            + _put_string(self.firmware, "firmware")
            + self.attestation
            + (self._GENERATION.pack(self.generation) if self.generation else b"")
        )

    @classmethod
    def decode(cls, data: bytes) -> OpenInfo:
        if len(data) < cls._HEAD.size:
            raise ProtocolError(f"info is {len(data)} octets; at least {cls._HEAD.size} expected")
        version, flags, mode, epoch, retry_after, fingerprint = cls._HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ProtocolError(f"info format {version} unknown; update the app")
        try:
            pin_mode = PinModeCode(mode)
        except ValueError as error:
            raise ProtocolError(f"unknown PIN mode {mode}") from error
        serial, offset = _take_string(data, cls._HEAD.size, "serial")
        model, offset = _take_string(data, offset, "model")
        firmware, offset = _take_string(data, offset, "firmware")
        tail = bytes(data[offset:])
        generation = 0
        if len(tail) == ATTESTATION_SIZE + cls._GENERATION.size:
            (generation,) = cls._GENERATION.unpack_from(tail, ATTESTATION_SIZE)
            if generation == 0:
                raise ProtocolError("info sends generation 0 explicitly; it must leave it out")
            tail = tail[:ATTESTATION_SIZE]
        attestation = tail
        if len(attestation) not in (0, ATTESTATION_SIZE):
            raise ProtocolError(
                f"info ends with {len(attestation)} octets; an attestation is {ATTESTATION_SIZE}"
                f" (then a {cls._GENERATION.size}-octet generation when it is not 0)"
            )
        return cls(
            serial=serial,
            model=model,
            firmware=firmware,
            pin_mode=pin_mode,
            flags=InfoFlag(flags),
            epoch=epoch,
            retry_after=retry_after,
            fingerprint=fingerprint,
            attestation=attestation,
            generation=generation,
        )


@dataclass(frozen=True)
class AdvertPayload:
    """Manufacturer-specific advertising data: enough to find a charger and know its state."""

    serial: str
    flags: InfoFlag
    epoch: int

    _HEAD = struct.Struct("<2sBBI")

    def encode(self) -> bytes:
        """The payload after the company identifier."""
        head = self._HEAD.pack(ADV_MAGIC, FORMAT_VERSION, int(self.flags), _check_epoch(self.epoch))
        return head + _put_string(self.serial, "serial")

    @classmethod
    def decode(cls, data: bytes) -> AdvertPayload:
        if len(data) < cls._HEAD.size or data[:2] != ADV_MAGIC:
            raise ProtocolError("not a chargepin advertisement")
        _, version, flags, epoch = cls._HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ProtocolError(f"advertisement format {version} unknown; update the app")
        serial, _ = _take_string(data, cls._HEAD.size, "serial")
        return cls(serial=serial, flags=InfoFlag(flags), epoch=epoch)


class ChargingState(enum.IntEnum):
    """What the charging point is doing."""

    IDLE = 0
    CHARGING = 1


MIN_CURRENT_A = 6  # IEC 61851-1: the lowest PWM-signalled current
MAX_CURRENT_A = 32


def checked_current_limit(amps: int) -> int:
    """A charging current limit the EVSE can signal, else ProtocolError saying the range."""
    if not MIN_CURRENT_A <= amps <= MAX_CURRENT_A:
        raise ProtocolError(f"current limit {amps} A outside {MIN_CURRENT_A}-{MAX_CURRENT_A} A")
    return amps


@dataclass(frozen=True)
class ChargerStatus:
    """The protected status characteristic."""

    state: ChargingState
    current_limit: int
    cable_locked: bool
    energy_wh: int

    _FORMAT = struct.Struct("<BBBI")

    def encode(self) -> bytes:
        return self._FORMAT.pack(
            int(self.state), self.current_limit, int(self.cable_locked), self.energy_wh
        )

    @classmethod
    def decode(cls, data: bytes) -> ChargerStatus:
        if len(data) != cls._FORMAT.size:
            raise ProtocolError(f"status is {len(data)} octets; {cls._FORMAT.size} expected")
        state, limit, locked, energy = cls._FORMAT.unpack(data)
        try:
            return cls(ChargingState(state), limit, bool(locked), energy)
        except ValueError as error:
            raise ProtocolError(f"unknown charging state {state}") from error


class ControlOp(enum.IntEnum):
    """Opcodes of the protected control characteristic."""

    START = 0x01
    STOP = 0x02
    SET_CURRENT_LIMIT = 0x03
    LOCK_CABLE = 0x04
    UNLOCK_CABLE = 0x05


@dataclass(frozen=True)
class ControlCommand:
    """One write to the control characteristic: an opcode and, for the limit, amperes."""

    op: ControlOp
    amps: int | None = None

    def encode(self) -> bytes:
        if self.op is ControlOp.SET_CURRENT_LIMIT:
            if self.amps is None:
                raise ProtocolError("set current limit needs amperes")
            return bytes([self.op, checked_current_limit(self.amps)])
        return bytes([self.op])

    @classmethod
    def decode(cls, data: bytes) -> ControlCommand:
        if not data:
            raise ProtocolError("empty control command; write an opcode")
        try:
            op = ControlOp(data[0])
        except ValueError as error:
            raise ProtocolError(f"unknown control opcode 0x{data[0]:02X}") from error
        if op is ControlOp.SET_CURRENT_LIMIT:
            if len(data) != 2:
                raise ProtocolError("set current limit is 2 octets: opcode and amperes")
            amps = data[1]
            return cls(op, checked_current_limit(amps))
        if len(data) != 1:
            raise ProtocolError(f"{op.name.lower()} takes no argument; write 1 octet")
        return cls(op)


@dataclass(frozen=True)
class AdminResult:
    """The admin result characteristic: the outcome of this link's last ticket.

    Binary and compact so that a result with its receipt fits one ATT read at the MTU the
    phone negotiates (247): the charger drops the writer's link right after that read when
    the action interrupts connections (enable PIN, forget phones).
    """

    ok: bool
    action: str = ""
    reason: str = ""
    detail: str = ""
    receipt: bytes = b""
    phones: tuple[str, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        if len(self.receipt) > 255 or len(self.phones) > 255:
            raise ProtocolError("admin result: receipt or phone list too long")
        out = bytearray([FORMAT_VERSION, int(self.ok)])
        out += _put_string(self.action, "action") + _put_string(self.reason, "reason")
        # Cut by octets, not characters: a refusal's detail may quote non-ASCII text.
        detail = self.detail.encode("utf-8")[:255].decode("utf-8", "ignore")
        out += _put_string(detail, "detail")
        out += bytes([len(self.receipt)]) + self.receipt
        out += bytes([len(self.phones)])
        for phone in self.phones:
            out += _put_string(phone, "phone")
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> AdminResult:
        if len(data) < 2 or data[0] != FORMAT_VERSION or data[1] > 1:
            raise ProtocolError("not an admin result of a known format; update the app")
        action, offset = _take_string(data, 2, "action")
        reason, offset = _take_string(data, offset, "reason")
        detail, offset = _take_string(data, offset, "detail")
        if offset >= len(data) or offset + 1 + data[offset] > len(data):
            raise ProtocolError("admin result: receipt truncated")
        receipt = data[offset + 1 : offset + 1 + data[offset]]
        offset += 1 + data[offset]
        if offset >= len(data):
            raise ProtocolError("admin result: phone count missing")
        phones = []
        count, offset = data[offset], offset + 1
        for _ in range(count):
            phone, offset = _take_string(data, offset, "phone")
            phones.append(phone)
        if offset != len(data):
            raise ProtocolError(f"admin result: {len(data) - offset} unexpected trailing octets")
        return cls(bool(data[1]), action, reason, detail, bytes(receipt), tuple(phones))
