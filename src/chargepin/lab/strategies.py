"""Hypothesis strategies for every byte-level input of chargepin, and the fuzz targets on them.

docs/SECURITY.md, "Fuzzing". What an attacker in radio range, a forged file or a failing disk
controls: the core wire formats, advertising data, tickets, receipts, sticker payloads,
provisioning bundle files, the charger's state file, and GATT writes (their radio harness is
`chargepin.lab.fuzz.Air`). For each there are structured valid values, mutations of valid
encodings (bit flips, cuts, extensions, splices) and raw bytes. A target's check feeds one example
to the real code and raises AssertionError only when the code misbehaves: an exception other
than the documented ChargepinError, an error without a message, altered data accepted, a valid
value not read back, a refused state file changed.

`TARGETS` is what `chargepin lab fuzz` runs for minutes and tests/lab/test_fuzz.py for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bumble import att, gatt, hci
from bumble.core import UUID
from bumble.device import Advertisement
from bumble.gatt_client import AttributeProxy
from bumble.keys import PairingKeys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import assume
from hypothesis import strategies as st

from chargepin.charger.daemon import ChargerDaemon
from chargepin.charger.errors import StateError
from chargepin.charger.service import charger_report, current_pin, provision_charger, read_bundle
from chargepin.charger.store import StateStore
from chargepin.clock import FakeClock
from chargepin.core import protocol
from chargepin.core.epochs import FINGERPRINT_SIZE, MAX_EPOCH
from chargepin.core.errors import (
    ChargepinError,
    InvalidSticker,
    ReceiptInvalid,
    TicketRejected,
)
from chargepin.core.keys import PURPOSE_RECEIPT, PURPOSE_TICKET, derive_key
from chargepin.core.lockout import LockoutState, record_failure
from chargepin.core.pin import Pin, weakness
from chargepin.core.pin_state import PinState
from chargepin.core.profiles import PROFILES, ProfileName
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    AdminResult,
    AdvertPayload,
    ChargerInfo,
    ChargerStatus,
    ChargingState,
    ControlCommand,
    ControlOp,
    InfoFlag,
    PinModeCode,
    ProtocolError,
)
from chargepin.core.provisioning import (
    CLAIM_ALPHABET,
    CLAIM_CODE_LENGTH,
    SERIAL_RE,
    ProvisioningBundle,
    StickerPayload,
)
from chargepin.core.tickets import (
    CHALLENGE_SIZE,
    NONCE_SIZE,
    RECEIPT_VERSION,
    TAG_SIZE,
    TICKET_VERSION,
    Action,
    Receipt,
    Ticket,
    issue_ticket,
    open_ticket,
    seal_ticket,
    sign_receipt,
    verify_receipt,
)
from chargepin.lab.testbed import ChargerSpec, provision
from chargepin.phone.client import FoundCharger, parse_advertisement
from chargepin.radio.virtual import VirtualRadio

T = TypeVar("T")
E = TypeVar("E", bound=ChargepinError)
V = TypeVar("V", ChargerInfo, AdvertPayload, ChargerStatus, ControlCommand, AdminResult)

MAX_ATT_VALUE = 512
"""Core spec Vol 3 Part F 3.2.9: no attribute value is longer; Bumble refuses longer writes."""
NOTIFY_ON = b"\x01\x00"
NOTIFY_OFF = b"\x00\x00"
INDICATE_ON = b"\x02\x00"
CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
TICKET_REASONS = frozenset({"malformed", "foreign", "tampered", "expired", "challenge", "bad_args"})
"""Every reason open_ticket may give (docs/PROTOCOL.md, "Tickets")."""
TICKET_REASONS_FOR_JUNK = frozenset({"malformed", "foreign", "tampered"})
"""What the opener may say about bytes the fleet service did not seal as they are."""


# ------------------------------------------------------------------------------ the oracle


def outcome(call: Callable[[], T], documented: type[E]) -> T | E:
    """What `call` returns, or the documented error it raised with a message.

    Anything else escaping the code under test is the bug fuzzing looks for; it becomes an
    AssertionError that names the exception, with the original as its cause.
    """
    try:
        return call()
    except documented as error:
        if not str(error).strip():
            raise AssertionError(f"{type(error).__name__} without a message") from error
        return error
    except Exception as error:  # any other exception is the finding
        raise AssertionError(
            f"{exception_name(error)} instead of {documented.__name__}: {error}"
        ) from error


def exception_name(error: BaseException) -> str:
    """`ValueError`, or `struct.error` for exceptions outside the builtins."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class ErrorLog(logging.Handler):
    """Collects ERROR records: Bumble logs, rather than raises, what a GATT handler or a task
    raised, and leaves the request unanswered."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.on_record: Callable[[], None] | None = None
        """Called on every record (the GATT harness stops waiting for an answer with it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record()

    def take(self) -> list[str]:
        """The messages logged since the last call, each with the exception it carries."""
        messages = []
        for record in self.records:
            text = _ANSI_COLOUR.sub("", record.getMessage()).strip()
            error = record.exc_info[1] if record.exc_info else None
            if error is not None:
                text += f" {type(error).__name__}: {error}"
            messages.append(text)
        self.records.clear()
        return messages


@contextlib.contextmanager
def logged_errors() -> Iterator[ErrorLog]:
    """Collect the ERROR records logged inside the block (from any logger)."""
    log = ErrorLog()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        yield log
    finally:
        root.removeHandler(log)


# ------------------------------------------------------------------------------ mutations


@st.composite
def _one_change(draw: st.DrawFn, blob: bytes) -> bytes:
    kinds = ["flip", "cut", "extend", "splice"] if blob else ["extend"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flip":
        at = draw(st.integers(0, len(blob) - 1))
        mask = draw(st.integers(1, 255))
        return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1 :]
    if kind == "cut":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "extend":
        return blob + draw(st.binary(min_size=1, max_size=64))
    start = draw(st.integers(0, len(blob) - 1))
    end = draw(st.integers(start, len(blob)))
    return blob[:start] + draw(st.binary(max_size=32)) + blob[end:]


@st.composite
def mutations(draw: st.DrawFn, blob: bytes) -> bytes:
    """`blob` with one to four changes (bit flips, cuts, extensions, spliced-in runs); never
    `blob` itself."""
    changed = blob
    for _ in range(draw(st.integers(1, 4), label="changes")):
        changed = draw(_one_change(changed))
    assume(changed != blob)
    return changed


@st.composite
def text_mutations(draw: st.DrawFn, text: str) -> str:
    """`text` with one to three characters replaced, removed or inserted, or cut short."""
    changed = text
    for _ in range(draw(st.integers(1, 3), label="changes")):
        kind = draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
        at = draw(st.integers(0, len(changed)))
        char = draw(st.one_of(st.sampled_from(":0123456789ABCZabcz-_ \t\n"), st.characters()))
        if kind == "replace":
            changed = changed[:at] + char + changed[at + 1 :]
        elif kind == "delete":
            changed = changed[:at] + changed[at + 1 :]
        elif kind == "insert":
            changed = changed[:at] + char + changed[at:]
        else:
            changed = changed[:at]
    assume(changed != text)
    return changed


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


JSON_VALUES = st.recursive(JSON_SCALARS, _json_containers, max_leaves=12)
JSON_TRAPS = st.one_of(
    st.integers(10, 100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(10, 100_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.integers(4000, 6000).map(lambda digits: "1" + "0" * digits),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '{"a":1,"a":2}']),
    st.sampled_from(["", " ", "\ufeff{}", "null", "[]", "{}", "{", '"', "tru"]),
)
"""JSON texts that trip parsers: nesting past the recursion limit, 6000-digit integers (over
Python's int/str limit), non-finite numbers, lone surrogates, duplicate keys, truncations."""


def json_texts(shaped: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[str]:
    """JSON text: any value, `shaped` values when given (objects with the right keys and
    wrong values), and the traps."""
    values = JSON_VALUES if shaped is None else st.one_of(shaped, JSON_VALUES)
    return st.one_of(values.map(json.dumps), JSON_TRAPS)


# ------------------------------------------------------------------------------ wire formats


def _wire_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text of at most 255 UTF-8 octets: what one length-prefixed string field holds."""
    return st.text(max_size=max_size).filter(lambda text: len(text.encode()) <= 255)


U8 = st.integers(0, 0xFF)
U32 = st.integers(0, 0xFFFF_FFFF)
INFO_FLAGS = U8.map(InfoFlag)

CHARGER_INFOS = st.builds(
    ChargerInfo,
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


def _exact(data: bytes, encoded: bytes) -> bool:
    return data == encoded


def _prefix(data: bytes, encoded: bytes) -> bool:
    """Trailing octets are left for later versions of the format (info, advertisement)."""
    return data.startswith(encoded)


def _status_wire(data: bytes, encoded: bytes) -> bool:
    """Exact, except that any non-zero cable octet reads as locked."""
    return (
        len(data) == len(encoded)
        and data[:2] + data[3:] == encoded[:2] + encoded[3:]
        and bool(data[2]) == bool(encoded[2])
    )


def _check_decoder(
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


# ------------------------------------------------------------------------------ advertising


ADVERTISER = hci.Address("F0:F1:F2:F3:F4:F5")


def advertising_data(payload: AdvertPayload) -> bytes:
    """The daemon's advertising data for `payload`: flags, then manufacturer data."""
    flags = bytes([2, 0x01, 0x06])
    manufacturer = protocol.COMPANY_ID.to_bytes(2, "little") + payload.encode()
    return flags + bytes([1 + len(manufacturer), 0xFF]) + manufacturer


@dataclass(frozen=True)
class AdvertisingCase:
    """Advertising data a phone hears while scanning; `payload` when it is a charger's."""

    data: bytes
    payload: AdvertPayload | None = None


_AD_STRUCTURES = st.lists(
    st.tuples(st.sampled_from([0x01, 0x09, 0xFF, 0x16, 0x03]), st.binary(max_size=28)).map(
        lambda item: bytes([len(item[1]) + 1, item[0]]) + item[1]
    ),
    max_size=4,
).map(b"".join)

ADVERTISING_CASES = st.one_of(
    ADVERT_PAYLOADS.map(lambda payload: AdvertisingCase(advertising_data(payload), payload)),
    ADVERT_PAYLOADS.flatmap(lambda payload: mutations(advertising_data(payload))).map(
        AdvertisingCase
    ),
    _AD_STRUCTURES.map(AdvertisingCase),
    st.binary(max_size=254).map(AdvertisingCase),
)


def check_advertisement(case: AdvertisingCase) -> None:
    """Whatever a device in range advertises, the phone's scan finds a charger or skips it."""
    try:
        found = parse_advertisement(Advertisement(address=ADVERTISER, data_bytes=case.data))
    except Exception as error:  # the scan must never stop on a stranger's data
        raise AssertionError(f"{type(error).__name__} while scanning: {error}") from error
    if case.payload is not None:
        assert found == FoundCharger(
            str(ADVERTISER), case.payload.serial, case.payload.flags, case.payload.epoch
        )


# ------------------------------------------------------------------------------ tickets


SECRETS = st.binary(min_size=32, max_size=32)
SERIALS = st.one_of(
    st.from_regex(SERIAL_RE, fullmatch=True),
    st.text(min_size=1, max_size=30).filter(lambda text: len(text.encode()) <= 255),
)
"""Label serials, and any text a ticket header may name (open_ticket takes up to 255 octets)."""
STRONG_PINS = st.integers(0, 999_999).map(lambda n: f"{n:06d}").filter(lambda d: not weakness(d))
ADDRESSES = st.tuples(st.binary(min_size=6, max_size=6), st.booleans(), st.booleans()).map(
    lambda item: (
        ":".join(f"{octet:02x}" if item[1] else f"{octet:02X}" for octet in item[0])
        + ("/P" if item[2] else "")
    )
)
CHALLENGES = st.binary(min_size=CHALLENGE_SIZE, max_size=CHALLENGE_SIZE)
NOW = st.integers(1_700_000_000, 2_000_000_000)


def ticket_args(action: Action) -> st.SearchStrategy[dict[str, str]]:
    """Arguments docs/PROTOCOL.md allows for `action`."""
    if action is Action.ENABLE_PIN:
        return st.one_of(st.just({}), STRONG_PINS.map(lambda pin: {"pin": pin}))
    if action is Action.CHANGE_PIN:
        one = st.one_of(STRONG_PINS.map(lambda pin: {"pin": pin}), st.just({"next_epoch": "1"}))
        forget = st.sampled_from([{}, {"forget_bonds": "1"}])
        return st.tuples(one, forget).map(lambda pair: {**pair[0], **pair[1]})
    if action is Action.REMOVE_PHONE:
        return st.one_of(ADDRESSES.map(lambda address: {"address": address}), st.just({"all": "1"}))
    return st.just({})


@st.composite
def tickets(draw: st.DrawFn, serial: str | None = None) -> Ticket:
    """A ticket the fleet service may issue, for `serial` or any serial."""
    action = draw(st.sampled_from(Action))
    return issue_ticket(
        serial if serial is not None else draw(SERIALS),
        draw(CHALLENGES),
        action,
        draw(ticket_args(action)),
        now=draw(NOW),
        lifetime=draw(st.sampled_from([120, 1, 3600])),
    )


@dataclass(frozen=True)
class TicketCase:
    """One ticket write reaching a charger (`serial`, `secret`) at `now`.

    `kind`: sealed (as issued), altered (a sealed one changed), other-charger, other-secret,
    junk (raw bytes), payload (any payload sealed with this charger's key). `ticket` is what
    was sealed; `challenge` the one the charger has outstanding (None: none).
    """

    kind: str
    serial: str
    secret: bytes
    blob: bytes
    now: float
    challenge: bytes | None
    ticket: Ticket | None = None


def seal_payload(secret: bytes, serial: str, payload: bytes, nonce: bytes) -> bytes:
    """Seal arbitrary payload bytes the way seal_ticket seals a ticket's JSON (PROTOCOL.md)."""
    encoded = serial.encode()
    header = bytes([TICKET_VERSION, len(encoded)]) + encoded
    key = derive_key(secret, serial, PURPOSE_TICKET)
    return header + nonce + AESGCM(key).encrypt(nonce, payload, header)


def _ticket_fields(serial: str, challenge: bytes, now: int) -> st.SearchStrategy[dict[str, Any]]:
    """Ticket payload objects: each field right or wrong, some missing, some extra."""
    action = st.sampled_from(Action).map(str)
    right: dict[str, st.SearchStrategy[Any]] = {
        "a": action,
        "c": st.just(challenge.hex()),
        "e": st.integers(now - 200, now + 200),
        "p": st.sampled_from(Action).flatmap(ticket_args),
        "s": st.just(serial),
    }
    wrong: dict[str, st.SearchStrategy[Any]] = {
        "a": st.one_of(JSON_VALUES, st.sampled_from([a.value.upper() for a in Action])),
        "c": st.one_of(JSON_VALUES, CHALLENGES.map(lambda c: c.hex().upper())),
        "e": st.one_of(JSON_VALUES, st.sampled_from([2**63, -1, 1e18, True])),
        "p": st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=12), JSON_VALUES)),
        "s": st.one_of(JSON_VALUES, SERIALS),
    }

    @st.composite
    def fields(draw: st.DrawFn) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for name in right:
            kind = draw(st.sampled_from(["right", "right", "wrong", "missing"]), label=name)
            if kind != "missing":
                built[name] = draw(right[name] if kind == "right" else wrong[name], label=name)
        built.update(draw(st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=2)))
        return built

    return fields()


@st.composite
def ticket_cases(draw: st.DrawFn) -> TicketCase:
    secret = draw(SECRETS, label="secret")
    ticket = draw(tickets(), label="ticket")
    serial = ticket.serial
    opened_at = ticket.expires_at + draw(st.integers(-200, 200), label="opened after expiry")
    challenge = draw(
        st.one_of(st.just(ticket.challenge), CHALLENGES, st.none()), label="outstanding"
    )
    nonce = draw(st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), label="nonce")
    sealed = seal_ticket(secret, ticket, nonce)
    kind = draw(
        st.sampled_from(["sealed", "altered", "other-charger", "other-secret", "junk", "payload"])
    )
    blob = sealed
    if kind == "altered":
        blob = draw(mutations(sealed), label="altered")
    elif kind == "other-charger":
        other = draw(SERIALS.filter(lambda text: text != serial), label="other serial")
        blob = seal_ticket(secret, dataclasses.replace(ticket, serial=other), nonce)
    elif kind == "other-secret":
        blob = seal_ticket(draw(SECRETS.filter(lambda s: s != secret)), ticket, nonce)
    elif kind == "junk":
        blob = draw(st.binary(max_size=600), label="junk")
    elif kind == "payload":
        fields = _ticket_fields(serial, ticket.challenge, ticket.expires_at)
        payload = draw(
            st.one_of(
                fields.map(lambda value: json.dumps(value).encode()),
                json_texts().map(str.encode),
                st.binary(max_size=200),
            ),
            label="payload",
        )
        blob = seal_payload(secret, serial, payload, nonce)
    return TicketCase(kind, serial, secret, blob, opened_at, challenge, ticket)


def check_ticket(case: TicketCase) -> None:
    """open_ticket answers any bytes with a Ticket or TicketRejected; only a sealed, unexpired
    ticket for the outstanding challenge opens, and it opens as it was issued."""
    opened = outcome(
        lambda: open_ticket(case.secret, case.serial, case.blob, case.now, case.challenge),
        TicketRejected,
    )
    if isinstance(opened, TicketRejected):
        assert opened.reason in TICKET_REASONS, f"unknown reason {opened.reason!r}"
        assert opened.detail.strip(), "a refusal without a detail"
    result: Ticket | str = opened.reason if isinstance(opened, TicketRejected) else opened
    ticket = case.ticket
    assert ticket is not None
    if case.kind == "sealed":
        if case.now > ticket.expires_at:
            assert result == "expired", result
        elif case.challenge != ticket.challenge:
            assert result == "challenge", result
        else:
            assert result == ticket, f"issued {ticket!r}, opened {result!r}"
    elif case.kind == "other-charger":
        assert result == "foreign", result
    elif case.kind == "other-secret":
        assert result == "tampered", result
    elif case.kind in ("altered", "junk"):
        assert result in TICKET_REASONS_FOR_JUNK, f"altered ticket opened: {result!r}"
    elif isinstance(result, Ticket):
        assert result.serial == case.serial
        assert result.challenge == case.challenge, "a ticket for another challenge opened"
        assert case.now <= result.expires_at, "an expired ticket opened"


# ------------------------------------------------------------------------------ receipts


RECEIPTS = st.builds(
    Receipt,
    serial=SERIALS,
    challenge=CHALLENGES,
    action=st.sampled_from(Action),
    epoch=st.integers(0, MAX_EPOCH),
    pin_enabled=st.booleans(),
    fingerprint=st.sampled_from([0, FINGERPRINT_SIZE]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    bonds_removed=st.integers(0, 2**32 - 1),
)


@dataclass(frozen=True)
class ReceiptCase:
    """A receipt the fleet service verifies for charger `serial`. `kind` as for tickets."""

    kind: str
    serial: str
    secret: bytes
    blob: bytes
    receipt: Receipt


def sign_payload(secret: bytes, serial: str, payload: bytes) -> bytes:
    """Sign arbitrary payload bytes the way sign_receipt signs a receipt's JSON (PROTOCOL.md)."""
    signed = bytes([RECEIPT_VERSION]) + payload
    key = derive_key(secret, serial, PURPOSE_RECEIPT)
    return signed + hmac.digest(key, signed, hashlib.sha256)[:TAG_SIZE]


_RECEIPT_KEYS = ("a", "b", "c", "f", "n", "p", "s")


@st.composite
def receipt_cases(draw: st.DrawFn) -> ReceiptCase:
    secret = draw(SECRETS, label="secret")
    receipt = draw(RECEIPTS, label="receipt")
    signed = sign_receipt(secret, receipt)
    kind = draw(
        st.sampled_from(["signed", "altered", "other-charger", "other-secret", "junk", "payload"])
    )
    blob = signed
    if kind == "altered":
        blob = draw(mutations(signed), label="altered")
    elif kind == "other-charger":
        other = draw(SERIALS.filter(lambda text: text != receipt.serial), label="other serial")
        blob = sign_receipt(secret, dataclasses.replace(receipt, serial=other))
    elif kind == "other-secret":
        blob = sign_receipt(draw(SECRETS.filter(lambda s: s != secret)), receipt)
    elif kind == "junk":
        blob = draw(st.binary(max_size=300), label="junk")
    elif kind == "payload":
        right = json.loads(signed[1:-TAG_SIZE])
        fields = {
            name: draw(st.one_of(st.just(right[name]), JSON_VALUES), label=name)
            for name in _RECEIPT_KEYS
            if draw(st.integers(0, 9), label=f"keep {name}")
        }
        payload = draw(
            st.one_of(
                st.just(json.dumps(fields).encode()),
                json_texts().map(str.encode),
                st.binary(max_size=200),
            ),
            label="payload",
        )
        blob = sign_payload(secret, receipt.serial, payload)
    return ReceiptCase(kind, receipt.serial, secret, blob, receipt)


def check_receipt(case: ReceiptCase) -> None:
    """verify_receipt answers any bytes with a Receipt or ReceiptInvalid; only what the charger
    signed verifies, and it verifies as signed."""
    verified = outcome(lambda: verify_receipt(case.secret, case.serial, case.blob), ReceiptInvalid)
    if case.kind == "signed":
        assert verified == case.receipt, f"signed {case.receipt!r}, verified {verified!r}"
    elif case.kind != "payload":
        assert isinstance(verified, ReceiptInvalid), f"altered receipt verified: {verified!r}"
    elif isinstance(verified, Receipt):
        assert verified.serial == case.serial
        again = verify_receipt(case.secret, case.serial, sign_receipt(case.secret, verified))
        assert again == verified, f"{verified!r} does not survive signing again"


# ------------------------------------------------------------------------------ stickers


CLAIM_CODES = st.text(CLAIM_ALPHABET, min_size=CLAIM_CODE_LENGTH, max_size=CLAIM_CODE_LENGTH)
STICKERS = st.builds(StickerPayload, st.from_regex(SERIAL_RE, fullmatch=True), CLAIM_CODES)
_SPACE = st.text(" \t\r\n", max_size=3)


@dataclass(frozen=True)
class StickerCase:
    """A scanned QR text and, when it is a real sticker's, the payload it carries."""

    text: str
    payload: StickerPayload | None = None


@st.composite
def _scanned(draw: st.DrawFn, payload: StickerPayload) -> StickerCase:
    """A sticker as scanners return it: any case of prefix and claim code, white space around."""
    prefix = "".join(
        char.lower() if draw(st.booleans()) else char for char in payload.encode().split(":")[0]
    )
    code = payload.claim_code.lower() if draw(st.booleans()) else payload.claim_code
    text = f"{prefix}:1:{payload.serial}:{code}"
    return StickerCase(draw(_SPACE) + text + draw(_SPACE), payload)


@st.composite
def _sticker_fields(draw: st.DrawFn) -> StickerCase:
    """Four fields, each right or wrong: another version, a serial or code out of its alphabet."""
    right = draw(STICKERS)
    fields = [
        st.sampled_from(["CHARGEPIN", "chargepin", "CHARGEPIN2", "CHARGEPİN", ""]),
        st.one_of(st.sampled_from(["1", "0", "2", "01", "1.0", " 1", "١"]), st.text(max_size=3)),
        st.one_of(st.just(right.serial), st.text(max_size=34)),
        st.one_of(st.just(right.claim_code), st.text(max_size=13), st.just("O" * 12)),
    ]
    return StickerCase(":".join(draw(field) for field in fields))


STICKER_CASES = st.one_of(
    STICKERS.flatmap(_scanned),
    _sticker_fields(),
    STICKERS.flatmap(lambda payload: text_mutations(payload.encode())).map(StickerCase),
    st.lists(st.text(max_size=16), max_size=6)
    .map(lambda parts: "CHARGEPIN:" + ":".join(parts))
    .map(StickerCase),
    st.text(max_size=80).map(StickerCase),
)


def check_sticker(case: StickerCase) -> None:
    """StickerPayload.parse reads a sticker or says what is wrong; it accepts nothing but the
    documented format (prefix and claim code in any case, white space around)."""
    parsed = outcome(lambda: StickerPayload.parse(case.text), InvalidSticker)
    if case.payload is not None:
        assert parsed == case.payload, f"{case.payload!r} read as {parsed!r}"
    if isinstance(parsed, StickerPayload):
        read = f"{case.text!r} read as {parsed!r}"
        assert case.text.isascii(), read  # look-alikes must not pass for the QR alphabet
        prefix, version, serial, code = case.text.strip().split(":")
        assert prefix.upper() == "CHARGEPIN" and version == "1", read
        assert parsed.serial == serial and SERIAL_RE.fullmatch(serial), read
        assert parsed.claim_code == code.upper(), read
        assert len(parsed.claim_code) == CLAIM_CODE_LENGTH, read
        assert all(char in CLAIM_ALPHABET for char in parsed.claim_code), read
        assert StickerPayload.parse(parsed.encode()) == parsed


# ------------------------------------------------------------------------------ bundles


BUNDLES = st.builds(
    ProvisioningBundle,
    serial=st.from_regex(SERIAL_RE, fullmatch=True),
    model=st.sampled_from(["Pulsar Max", "Pulsar Plus", "Commander 2"]),
    firmware=st.sampled_from(["6.11.2", "6.7.17", "6.8.0", "7.0"]),
    produced=st.dates(datetime.date(2020, 1, 1), datetime.date(2030, 12, 31)),
    secret=SECRETS,
)
_BUNDLE_KEYS = ("format", "serial", "model", "firmware", "produced", "secret")


@dataclass(frozen=True)
class BundleCase:
    """The bytes of a provisioning bundle file and, when unaltered, the bundle they hold."""

    data: bytes
    bundle: ProvisioningBundle | None = None


@st.composite
def _shaped_bundles(draw: st.DrawFn) -> bytes:
    """A bundle object with each field right, wrong or missing."""
    right = draw(BUNDLES).to_dict()
    fields: dict[str, Any] = {}
    for name in _BUNDLE_KEYS:
        kind = draw(st.sampled_from(["right", "right", "wrong", "missing"]), label=name)
        if kind == "right":
            fields[name] = right[name]
        elif kind == "wrong":
            fields[name] = draw(st.one_of(JSON_VALUES, st.text(max_size=70)), label=name)
    return json.dumps(fields).encode()


BUNDLE_CASES = st.one_of(
    BUNDLES.map(lambda bundle: BundleCase(bundle.to_json().encode(), bundle)),
    BUNDLES.flatmap(lambda bundle: mutations(bundle.to_json().encode())).map(BundleCase),
    _shaped_bundles().map(BundleCase),
    json_texts().map(lambda text: BundleCase(text.encode())),
    st.binary(max_size=300).map(BundleCase),
)


def check_bundle_file(case: BundleCase) -> None:
    """`chargepin charger init --bundle FILE` on any file: a charger or a ChargepinError.

    The file goes through read_bundle and, when accepted, through provision_charger, the
    step that stores what the bundle says.
    """
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "bundle.json"
        path.write_bytes(case.data)
        read = outcome(lambda: read_bundle(path), ChargepinError)
        if case.bundle is not None:
            assert read == case.bundle, f"{case.bundle!r} read as {read!r}"
        if isinstance(read, ChargepinError):
            return
        assert ProvisioningBundle.from_json(read.to_json()) == read
        outcome(
            lambda: provision_charger(
                Path(tmp) / "charger.db",
                serial=read.serial,
                model=read.model,
                firmware=read.firmware,
                produced=read.produced,
                secret=read.secret,
            ),
            ChargepinError,
        )


# ------------------------------------------------------------------------------ state files


STATE_SECRET = bytes(range(32))
STATE_BONDS = ("F1:22:33:44:55:66", "D4:11:22:33:44:55", "00:1B:DC:0A:0B:0C/P")


@functools.cache
def real_state_file() -> bytes:
    """A charger state file as a daemon leaves it after some use: a custom PIN, failures in the
    lockout window, events, counters and three bonds (one with an IRK, one Just Works)."""
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        with provision(path, ChargerSpec(serial="CP-0001", secret=STATE_SECRET)) as store:
            store.save_pin_state(PinState(True, 3, Pin("385172")))
            state = LockoutState()
            for second in (1000.0, 1010.0, 1020.0):
                state = record_failure(PROFILES[ProfileName.HARDENED].lockout, state, second)
            store.save_lockout_state(state)
            for index in range(12):
                store.record_event("pairing_failed", f"F1:22:33:44:55:{index:02X} wrong_pin", 1e9)
            store.record_event("pairing_ok", "F1:22:33:44:55:66 passkey", 1e9 + 5)
            key = PairingKeys.Key(value=bytes(range(16)), authenticated=True)
            keys = [
                PairingKeys(ltk=key, irk=PairingKeys.Key(value=bytes(16))),
                PairingKeys(ltk=PairingKeys.Key(value=bytes(16), authenticated=False)),
                PairingKeys(ltk=key, address_type=hci.AddressType.PUBLIC_DEVICE),
            ]
            for address, bond in zip(STATE_BONDS, keys, strict=True):
                asyncio.run(store.keystore.update(address, bond))
        leftovers = sorted(p.name for p in Path(tmp).iterdir() if p != path)
        assert not leftovers, f"closing the store left {leftovers}"
        return path.read_bytes()


@functools.cache
def _state_columns() -> tuple[tuple[str, str], ...]:
    """(table, column) of every table in the real state file, read from the file itself."""
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(real_state_file())
        connection = sqlite3.connect(path)
        try:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            return tuple(
                (table, row[1])
                for table in tables
                for row in connection.execute(f"PRAGMA table_info({table})")
            )
        finally:
            connection.close()


@functools.cache
def _json_keys() -> tuple[str, ...]:
    """Every object key in the JSON the real state file stores (lockout, bonds)."""
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            keys.update(value)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(real_state_file())
        connection = sqlite3.connect(path)
        try:
            for table, column in _state_columns():
                for (value,) in connection.execute(f"SELECT {column} FROM {table}"):
                    if isinstance(value, str) and value[:1] in "[{":
                        walk(json.loads(value))
        finally:
            connection.close()
    return tuple(sorted(keys))


SQL_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.deferred(
        lambda: json_texts(
            st.dictionaries(st.sampled_from(_json_keys()), JSON_VALUES, min_size=1, max_size=4)
        )
    ),
)
"""What a damaged or forged row may hold in any column (SQLite is dynamically typed)."""


@dataclass(frozen=True)
class SqlEdit:
    """One change made through SQLite, CHECK constraints off: the file stays a database."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ByteDamage:
    """One change to the file's bytes (what a failing flash or a cut write does).

    `at` is taken modulo the file's length (or page count), so it fits whatever file it hits.
    """

    kind: str  # flip (xor `data[0]` at `at`), truncate, extend, page (overwrite one page)
    at: int
    data: bytes = b"\x01"

    def apply(self, blob: bytes, page_size: int = 4096) -> bytes:
        if self.kind == "extend":
            return blob + self.data
        if not blob:
            return blob
        if self.kind == "flip":
            at = self.at % len(blob)
            return blob[:at] + bytes([blob[at] ^ (self.data[0] or 1)]) + blob[at + 1 :]
        if self.kind == "truncate":
            return blob[: self.at % len(blob)]
        pages = max(1, len(blob) // page_size)
        start = (self.at % pages) * page_size
        fill = (self.data or b"\x00") * (page_size // max(1, len(self.data)) + 1)
        return blob[:start] + fill[:page_size] + blob[start + page_size :]


@dataclass(frozen=True)
class StateFileCase:
    """A charger state file: `raw` bytes, or the real file with SQL edits then byte damage."""

    raw: bytes | None = None
    edits: tuple[SqlEdit, ...] = ()
    damage: tuple[ByteDamage, ...] = ()

    def build(self) -> bytes:
        if self.raw is not None:
            return self.raw
        data = real_state_file()
        if self.edits:
            with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
                path = Path(tmp) / "charger.db"
                path.write_bytes(data)
                connection = sqlite3.connect(path, isolation_level=None)
                try:
                    connection.execute("PRAGMA ignore_check_constraints = ON")
                    for edit in self.edits:
                        # NOT NULL and UNIQUE still hold; an earlier edit may have dropped
                        # the table: such an edit changes nothing.
                        with contextlib.suppress(sqlite3.IntegrityError, sqlite3.OperationalError):
                            connection.execute(edit.sql, edit.params)
                finally:
                    connection.close()
                data = path.read_bytes()
        for damage in self.damage:
            data = damage.apply(data)
        return data


@st.composite
def sql_edits(draw: st.DrawFn) -> SqlEdit:
    """Garbage in one column, rows removed or added, a table dropped, another schema version."""
    table, column = draw(st.sampled_from(_state_columns()), label="column")
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "insert", "drop", "version"]))
    if kind == "set":
        return SqlEdit(f"UPDATE {table} SET {column} = ?", (draw(SQL_VALUES, label="value"),))
    if kind == "delete":
        return SqlEdit(f"DELETE FROM {table}")
    if kind == "insert":
        columns = [name for other, name in _state_columns() if other == table]
        values = tuple(draw(SQL_VALUES, label=name) for name in columns)
        marks = ", ".join("?" for _ in columns)
        return SqlEdit(f"INSERT INTO {table} VALUES ({marks})", values)
    if kind == "drop":
        return SqlEdit(f"DROP TABLE {table}")
    return SqlEdit(f"PRAGMA user_version = {draw(st.integers(-(2**31), 2**31 - 1))}")


BYTE_DAMAGE = st.builds(
    ByteDamage,
    kind=st.sampled_from(["flip", "flip", "flip", "truncate", "extend", "page"]),
    at=st.integers(0, 2**20),
    data=st.binary(min_size=1, max_size=64),
)

STATE_FILE_DAMAGE = st.one_of(
    st.lists(BYTE_DAMAGE, min_size=1, max_size=8).map(lambda d: StateFileCase(damage=tuple(d))),
    st.binary(max_size=8192).map(lambda raw: StateFileCase(raw=raw)),
    st.binary(max_size=4096).map(lambda tail: StateFileCase(raw=b"SQLite format 3\x00" + tail)),
)
"""Bit flips, cuts, extensions and overwritten pages of a real state file, and random files."""
STATE_FILE_VALUES = st.builds(
    StateFileCase,
    edits=st.lists(sql_edits(), min_size=1, max_size=3).map(tuple),
    damage=st.lists(BYTE_DAMAGE, max_size=1).map(tuple),
)
"""A valid SQLite file with garbage rows and values (and sometimes one damaged byte)."""


async def _start_daemon(path: Path) -> None:
    """What `chargepin charger run` does first: open the state, build the daemon, power on
    (Bumble loads the bonds' IRKs), advertise, and resolve the private address of a phone
    that connects (as Bumble does on every connection); then stop."""
    store = StateStore.open(path)
    radio = VirtualRadio()
    endpoints = radio.attach("charger")
    try:
        daemon = ChargerDaemon(store, endpoints, clock=FakeClock())
        try:
            await daemon.start()
            resolver = daemon.device.address_resolver
            if resolver is not None:
                resolver.resolve(hci.Address.generate_private_address(bytes(16)))
        finally:
            await daemon.stop()
    finally:
        store.close()
        radio.detach(endpoints)


def _read_everything(store: StateStore) -> None:
    """Every read the store offers (the daemon's, the CLI's and the lab's)."""
    for read in (
        lambda: store.profile,
        lambda: store.lockout_config,
        lambda: store.lockout_state,
        lambda: store.custom_pin,
        lambda: store.epoch,
        lambda: store.pin_enabled,
        store.current_pin,
        store.counters,
        store.events,
        store.keystore.list_bonds,
        lambda: asyncio.run(store.keystore.get_all()),
    ):
        outcome(read, ChargepinError)


def check_state_file(case: StateFileCase) -> None:
    """A damaged state file is refused at open with a StateError that says what to do, and left
    as it was; a file that opens serves `charger info`, `charger pin` and a daemon start, or
    they fail with a ChargepinError."""
    data = case.build()
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "charger.db"
        path.write_bytes(data)
        opened = outcome(lambda: StateStore.open(path), StateError)
        if isinstance(opened, StateError):
            advice = ("restore", "provision", "upgrade", "check")
            assert any(word in str(opened) for word in advice), f"no next step in: {opened}"
            assert path.read_bytes() == data, "a refused state file was changed"
            return
        with opened:
            _read_everything(opened)
        outcome(lambda: charger_report(path), ChargepinError)
        outcome(lambda: current_pin(path), ChargepinError)
        with logged_errors() as log:
            outcome(lambda: asyncio.run(_start_daemon(path)), ChargepinError)
        assert not log.records, f"the daemon logged errors: {log.take()}"


# ------------------------------------------------------------------------------ GATT


@dataclass(frozen=True)
class GattTable:
    """Every attribute of the charger's server, as a client discovers it."""

    attributes: tuple[AttributeProxy[bytes], ...]

    def value(self, uuid: UUID | str) -> AttributeProxy[bytes]:
        """The (only) attribute of type `uuid`: a characteristic value."""
        wanted = UUID(uuid) if isinstance(uuid, str) else uuid
        (found,) = (a for a in self.attributes if a.type == wanted)
        return found

    def cccd_of(self, value: AttributeProxy[bytes]) -> AttributeProxy[bytes]:
        """The CCCD among the descriptors that follow `value` (Core spec Vol 3 Part G 3.3.3)."""
        for attribute in self.attributes:
            if attribute.handle <= value.handle:
                continue
            if attribute.type == CCCD:
                return attribute
            if not _is_descriptor(attribute):
                break
        raise LookupError(f"no CCCD after handle {value.handle}")

    def writable_by_design(self) -> set[int]:
        """Handles a client may write: the admin and control points and the two CCCDs."""
        service_changed = self.value(gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC)
        return {
            self.value(protocol.ADMIN_UUID).handle,
            self.value(protocol.CONTROL_UUID).handle,
            self.cccd_of(self.value(protocol.STATUS_UUID)).handle,
            self.cccd_of(service_changed).handle,
        }


def _is_descriptor(attribute: AttributeProxy[bytes]) -> bool:
    """Descriptor types are 0x29xx (Assigned Numbers 3.7)."""
    raw = attribute.type.to_bytes()
    return len(raw) == 2 and raw[1] == 0x29


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
    }
    for handle in table.writable_by_design():
        special.setdefault(handle, CCCD_VALUES)

    writable = [a for a in table.attributes if a.handle in special]
    # Half the writes go to the four writable attributes, where the code paths are.
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
    if write.handle == table.value(protocol.CONTROL_UUID).handle:
        if not owner:
            return frozenset({codes.INSUFFICIENT_ENCRYPTION})
        if control_oracle(status, write.value) is None:
            return frozenset({protocol.AttAppError.BAD_COMMAND})
        return frozenset({None})
    return frozenset({codes.WRITE_NOT_PERMITTED})


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class FuzzTarget(Generic[T]):
    """One input kind: how to make examples, and the check one example must pass."""

    name: str
    description: str
    strategy: st.SearchStrategy[T]
    check: Callable[[T], None]


def _targets(*targets: FuzzTarget[Any]) -> Mapping[str, FuzzTarget[Any]]:
    return {target.name: target for target in targets}


TARGETS: Mapping[str, FuzzTarget[Any]] = _targets(
    FuzzTarget(
        "info",
        "ChargerInfo.decode: the open info characteristic as the phone reads it",
        wire_cases(CHARGER_INFOS),
        _check_decoder(ChargerInfo.decode, _prefix),
    ),
    FuzzTarget(
        "advert-payload",
        "AdvertPayload.decode: the manufacturer data of an advertisement",
        wire_cases(ADVERT_PAYLOADS, 64),
        _check_decoder(AdvertPayload.decode, _prefix),
    ),
    FuzzTarget(
        "advertisement",
        "parse_advertisement: whole advertising data heard while scanning (Bumble's AD parser)",
        ADVERTISING_CASES,
        check_advertisement,
    ),
    FuzzTarget(
        "status",
        "ChargerStatus.decode: the status characteristic and its notifications",
        wire_cases(STATUSES, 16),
        _check_decoder(ChargerStatus.decode, _status_wire),
    ),
    FuzzTarget(
        "control",
        "ControlCommand.decode: what the charger does with a control write",
        wire_cases(CONTROL_COMMANDS, 16),
        _check_decoder(ControlCommand.decode, _exact),
    ),
    FuzzTarget(
        "admin-result",
        "AdminResult.decode: the admin result characteristic as the phone reads it",
        wire_cases(ADMIN_RESULTS),
        _check_decoder(AdminResult.decode, _exact),
    ),
    FuzzTarget(
        "admin-result-encode",
        "AdminResult.encode: refusals quoting any text still encode (detail cut to 255 octets)",
        ADMIN_RESULTS_LONG_DETAIL,
        check_admin_result_encoding,
    ),
    FuzzTarget(
        "ticket",
        "open_ticket: sealed, altered, foreign, junk and re-sealed garbage tickets",
        ticket_cases(),
        check_ticket,
    ),
    FuzzTarget(
        "receipt",
        "verify_receipt: signed, altered, foreign, junk and re-signed garbage receipts",
        receipt_cases(),
        check_receipt,
    ),
    FuzzTarget(
        "sticker",
        "StickerPayload.parse: scanned QR texts, altered stickers and any text",
        STICKER_CASES,
        check_sticker,
    ),
    FuzzTarget(
        "bundle-file",
        "read_bundle + provision_charger: `charger init --bundle FILE` on any file",
        BUNDLE_CASES,
        check_bundle_file,
    ),
    FuzzTarget(
        "state-file-damage",
        "StateStore.open, charger info/pin, daemon start: flipped, cut, overwritten, random files",
        STATE_FILE_DAMAGE,
        check_state_file,
    ),
    FuzzTarget(
        "state-file-values",
        "the same on valid SQLite files with garbage rows and values",
        STATE_FILE_VALUES,
        check_state_file,
    ),
)
"""Every pure fuzz target (no radio harness), by name. The GATT target is in lab/fuzz.py."""
