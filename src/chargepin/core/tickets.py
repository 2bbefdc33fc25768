"""Tickets (the owner's authority, carried offline to the charger) and the charger's receipts.

DESIGN.md, "Tickets" and "Receipts": anything that changes security state over Bluetooth needs
a ticket the fleet service issues for one {serial, challenge, action, arguments} after checking
the user's role. The ticket is sealed with AES-GCM under a key derived from the charger's
factory secret, so nobody without the fleet service can forge one and a custom PIN never
crosses the air in clear; the single-use challenge the charger handed out refuses replays.
After acting, the charger answers with a receipt (an HMAC under its secret) that the fleet
service checks before it commits the change. The wire formats are in docs/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.errors import (
    InvalidConfig,
    InvalidPin,
    ReceiptInvalid,
    TicketRejected,
    format_duration,
)
from chargepin.core.keys import PURPOSE_RECEIPT, PURPOSE_TICKET, derive_key
from chargepin.core.limits import (
    CHALLENGE_SIZE,
    MAX_EPOCH,
    MAX_GENERATION,
    MAX_STRING_OCTETS,
    require_now,
)
from chargepin.core.pin import Pin, weakness

TICKET_VERSION = 1
RECEIPT_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
"""Bytes of the AES-GCM tag of a ticket and of the truncated HMAC of a receipt."""
DEFAULT_LIFETIME = 120.0
"""Seconds a ticket stays valid: long enough to walk to the charger, short enough to be useless
when lost."""

MAX_EXPIRES_AT = 2**63 - 1

_MIN_TICKET = 2 + 1 + NONCE_SIZE + TAG_SIZE
_FLAG = "1"
_ADDRESS_RE = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}(?:/P)?", re.ASCII | re.IGNORECASE)
_HEX_RE = re.compile(r"[0-9a-f]*", re.ASCII)

OP_SIZE = 16
"""Random octets of a fleet command's identity (`op`): 32 lower-case hex digits in a ticket."""
OP = "op"
"""The ticket argument naming the fleet command a ticket was sealed for (core/applied_ops.py):
the charger applies a command once however many tickets carry it."""
_OP_RE = re.compile(rf"[0-9a-f]{{{2 * OP_SIZE}}}", re.ASCII)


class Action(StrEnum):
    """What a ticket authorises."""

    ENABLE_PIN = "enable_pin"
    CHANGE_PIN = "change_pin"
    DISABLE_PIN = "disable_pin"
    LIST_PHONES = "list_phones"
    REMOVE_PHONE = "remove_phone"
    ADMIT_PAIRING = "admit_pairing"
    """Let the phone on this link pair while new pairings are locked out (a member's phone
    must not be shut out by a stranger keeping the lock up; docs/SECURITY.md). The only
    ticket a charger takes on a link that is not yet paired."""
    REKEY = "rekey"
    """Move to the next PIN generation: a sequence of PINs nobody has seen (after a revocation,
    or when PINs may have leaked; DECISIONS.md, "Re-key")."""


_ACTION_VALUES = frozenset(action.value for action in Action)


def _pin_value(value: str) -> str:
    """A custom PIN argument: six digits, not weak. The message never repeats the PIN."""
    try:
        Pin(value)
    except InvalidPin:
        raise InvalidConfig("argument pin must be exactly 6 digits 0-9") from None
    reason = weakness(value)
    if reason is not None:
        raise InvalidConfig(f"argument pin is too easy to guess ({reason}); choose another PIN")
    return value


def _flag_value(name: str) -> Callable[[str], str]:
    """A yes-flag argument: present means yes and its only value is "1"."""

    def check(value: str) -> str:
        if value != _FLAG:
            raise InvalidConfig(f"argument {name} must be {_FLAG!r} when present, got {value!r}")
        return value

    return check


def _address_value(value: str) -> str:
    """A Bluetooth address as Bumble prints it, "/P" marking a public address; upper-cased."""
    if not _ADDRESS_RE.fullmatch(value):
        raise InvalidConfig(
            f"argument address must look like F0:F1:F2:F3:F4:F5 or F0:F1:F2:F3:F4:F5/P, "
            f"got {value!r}"
        )
    return value.upper()


def new_op() -> str:
    """A fresh command identity: OP_SIZE random octets in hex, never reused (a row id would be,
    by a restored backup or a second database)."""
    return secrets.token_bytes(OP_SIZE).hex()


def op_value(value: str) -> str:
    """A command identity as a ticket carries it: exactly 32 lower-case hex digits."""
    if not isinstance(value, str) or not _OP_RE.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:80]}..."
        raise InvalidConfig(
            f"argument op must be {2 * OP_SIZE} lower-case hex digits (a command's identity), "
            f"got {shown}"
        )
    return value


_ARG_VALUES: Mapping[str, Callable[[str], str]] = {
    "pin": _pin_value,
    "next_epoch": _flag_value("next_epoch"),
    "forget_bonds": _flag_value("forget_bonds"),
    "address": _address_value,
    "all": _flag_value("all"),
    OP: op_value,
}
"""How each argument's value is checked (and normalised), whatever the action."""


@dataclass(frozen=True)
class _ArgRule:
    """The arguments one action takes: exactly one of `one_of` (if any) plus any `optional`."""

    one_of: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()


_ANY = frozenset({OP})
"""Arguments every action takes: `op`, the fleet command a ticket carries (tickets a phone
carries over Bluetooth have none)."""

ARG_RULES: Mapping[Action, _ArgRule] = {
    # No "pin" means: use the PIN of the current epoch.
    Action.ENABLE_PIN: _ArgRule(optional=frozenset({"pin"}) | _ANY),
    Action.CHANGE_PIN: _ArgRule(
        one_of=frozenset({"pin", "next_epoch"}), optional=frozenset({"forget_bonds"}) | _ANY
    ),
    Action.DISABLE_PIN: _ArgRule(optional=_ANY),
    Action.LIST_PHONES: _ArgRule(optional=_ANY),
    Action.REMOVE_PHONE: _ArgRule(one_of=frozenset({"address", "all"}), optional=_ANY),
    Action.ADMIT_PAIRING: _ArgRule(optional=_ANY),
    Action.REKEY: _ArgRule(optional=_ANY),
}
"""The one table of which arguments each action takes."""


def check_args(action: Action, args: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The arguments of `action`, checked against ARG_RULES, normalised and sorted by name."""
    rule = ARG_RULES[action]
    allowed = rule.one_of | rule.optional
    unknown = set(args) - allowed
    if unknown:
        own = allowed - _ANY  # `op` is the fleet's, not the action's: not offered
        takes = ", ".join(sorted(own)) if own else "no arguments"
        raise InvalidConfig(
            f"{action.value} does not take {', '.join(sorted(map(str, unknown)))}; it takes {takes}"
        )
    if rule.one_of and len(rule.one_of & set(args)) != 1:
        raise InvalidConfig(
            f"{action.value} needs exactly one of {' or '.join(sorted(rule.one_of))}"
        )
    checked = []
    for name, value in sorted(args.items()):
        if not isinstance(value, str):
            raise InvalidConfig(f"argument {name} must be text, got {type(value).__name__}")
        checked.append((name, _ARG_VALUES[name](value)))
    return tuple(checked)


@dataclass(frozen=True, repr=False)
class Ticket:
    """The fleet service's authorisation for one action on one charger, against one challenge.

    `args` are kept sorted by name and checked against ARG_RULES; `expires_at` is keyword-only
    because it follows the defaulted `args`.
    """

    serial: str
    challenge: bytes
    action: Action
    args: tuple[tuple[str, str], ...] = ()
    _: KW_ONLY
    expires_at: int

    def __post_init__(self) -> None:
        _require_serial(self.serial)
        if not isinstance(self.challenge, bytes) or len(self.challenge) != CHALLENGE_SIZE:
            raise InvalidConfig(
                f"ticket challenge must be {CHALLENGE_SIZE} bytes, got {self.challenge!r}; "
                "read a fresh challenge from the charger"
            )
        try:
            action = Action(self.action)
        except ValueError:
            raise InvalidConfig(
                f"unknown ticket action {self.action!r}; "
                f"use one of {', '.join(a.value for a in Action)}"
            ) from None
        if (
            isinstance(self.expires_at, bool)
            or not isinstance(self.expires_at, int)
            or not 0 <= self.expires_at <= MAX_EXPIRES_AT
        ):
            raise InvalidConfig(
                f"ticket expires_at must be whole unix seconds 0..2**63-1, got {self.expires_at!r}"
            )
        if not isinstance(self.args, tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in self.args
        ):
            raise InvalidConfig(f"ticket args must be (name, value) pairs, got {self.args!r}")
        names = [name for name, _ in self.args]
        if len(set(names)) != len(names):
            raise InvalidConfig(f"ticket args name {names!r} more than once; give each once")
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "args", check_args(action, dict(self.args)))

    def arg(self, name: str) -> str | None:
        """The value of argument `name`, or None when the ticket does not carry it."""
        return dict(self.args).get(name)

    def __repr__(self) -> str:
        # A custom PIN travels in the args; like Pin's, this repr never shows it.
        args = tuple((name, "******" if name == "pin" else value) for name, value in self.args)
        return (
            f"Ticket(serial={self.serial!r}, challenge={self.challenge.hex()}, "
            f"action={self.action.value}, args={args!r}, expires_at={self.expires_at})"
        )


def issue_ticket(
    serial: str,
    challenge: bytes,
    action: Action | str,
    args: Mapping[str, str] | None,
    now: float,
    lifetime: float = DEFAULT_LIFETIME,
) -> Ticket:
    """A ticket for `action` on charger `serial` against `challenge`, valid `lifetime` seconds.

    Raises InvalidConfig (naming the problem) when the action or its arguments are wrong.
    """
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        raise InvalidConfig(f"ticket lifetime must be seconds, got {lifetime!r}")
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise InvalidConfig(f"ticket lifetime must be more than 0 s, got {lifetime!r}; e.g. 120")
    require_now(now)
    try:
        kind = Action(action)
    except ValueError:
        raise InvalidConfig(
            f"unknown ticket action {action!r}; use one of {', '.join(a.value for a in Action)}"
        ) from None
    pairs = tuple((args or {}).items())
    return Ticket(serial, challenge, kind, pairs, expires_at=math.floor(now + lifetime))


def _ticket_header(serial: str) -> bytes:
    """Version byte, serial length byte, serial: the ticket's clear, authenticated header."""
    encoded = serial.encode("utf-8")
    return bytes([TICKET_VERSION, len(encoded)]) + encoded


def _canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON with sorted keys: one encoding per value."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def seal_ticket(secret: bytes, ticket: Ticket, nonce: bytes | None = None) -> bytes:
    """The ticket as bytes for the charger: clear header, then AES-GCM over the JSON payload.

    header = 0x01 | len(serial) | serial; wire = header | nonce (12) | ciphertext+tag, with
    the header as associated data. Pass `nonce` only for test vectors; never reuse one.
    """
    payload = _canonical_json(
        {
            "a": ticket.action.value,
            "c": ticket.challenge.hex(),
            "e": ticket.expires_at,
            "p": dict(ticket.args),
            "s": ticket.serial,
        }
    )
    return seal_payload(secret, ticket.serial, payload, nonce)


def seal_payload(secret: bytes, serial: str, payload: bytes, nonce: bytes | None = None) -> bytes:
    """Any payload bytes sealed for charger `serial` exactly as `seal_ticket` seals a ticket.

    The fleet only ever seals a checked Ticket (`seal_ticket`); this is public for the lab,
    whose fuzzing and tamper attacks need the charger's key around payloads no Ticket can hold
    (missing or extra fields, wrong types, not JSON), sealed the one documented way.
    """
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise InvalidConfig(f"ticket nonce must be {NONCE_SIZE} bytes, got {nonce!r}")
    header = _ticket_header(serial)
    sealed = AESGCM(derive_key(secret, serial, PURPOSE_TICKET)).encrypt(nonce, payload, header)
    return header + nonce + sealed


def open_ticket(
    secret: bytes, serial: str, blob: bytes, now: float, challenge: bytes | None
) -> Ticket:
    """The ticket in `blob` if this charger (`serial`) may act on it now, else TicketRejected.

    Reason codes: malformed, foreign, tampered, expired, challenge, bad_args. `challenge` is
    the one this charger handed out and has not yet consumed (None: none is outstanding); the
    caller consumes it whatever the outcome, which is what makes a ticket single-use.
    Any bytes input ends in a Ticket or TicketRejected, never another exception.
    """
    _require_serial(serial)
    require_now(now)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TicketRejected("malformed", f"ticket must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < _MIN_TICKET:
        raise TicketRejected(
            "malformed", f"ticket is {len(data)} bytes, shorter than any ticket; ask again"
        )
    if data[0] != TICKET_VERSION:
        raise TicketRejected(
            "malformed",
            f"ticket format version {data[0]} is not supported (this charger reads version "
            f"{TICKET_VERSION}); update the app or the charger",
        )
    serial_length = data[1]
    header_length = 2 + serial_length
    if serial_length == 0 or header_length + NONCE_SIZE + TAG_SIZE > len(data):
        raise TicketRejected("malformed", "ticket header has an impossible serial length")
    try:
        ticket_serial = data[2:header_length].decode("utf-8")
    except UnicodeDecodeError:
        raise TicketRejected("malformed", "ticket serial is not UTF-8 text") from None
    if ticket_serial != serial:
        raise TicketRejected(
            "foreign",
            f"this ticket is for charger {ticket_serial!r}, this is {serial!r}; "
            "ask for a ticket for this charger",
        )
    nonce = data[header_length : header_length + NONCE_SIZE]
    try:
        payload = AESGCM(derive_key(secret, serial, PURPOSE_TICKET)).decrypt(
            nonce, data[header_length + NONCE_SIZE :], data[:header_length]
        )
    except InvalidTag:
        raise TicketRejected(
            "tampered",
            "ticket was altered or not issued by the fleet service; ask the app for a new one",
        ) from None
    fields = _ticket_fields(payload, serial)
    expires_at = fields["e"]
    if now > expires_at:
        raise TicketRejected(
            "expired",
            f"ticket expired {format_duration(now - expires_at)} ago; "
            "ask the app for a new one and write it within two minutes",
        )
    if challenge is None or not hmac.compare_digest(fields["c"], challenge):
        raise TicketRejected(
            "challenge",
            "ticket was already used or is for an older challenge; "
            "read a new challenge and ask again",
        )
    action = Action(fields["a"])
    try:
        args = check_args(action, fields["p"])
    except InvalidConfig as error:
        raise TicketRejected(
            "bad_args", f"{error}; the app and the charger disagree, update both"
        ) from None
    return Ticket(serial, fields["c"], action, args, expires_at=expires_at)


def _ticket_fields(payload: bytes, serial: str) -> dict[str, Any]:
    """The decrypted payload's fields with their types checked, else TicketRejected(malformed)."""
    try:
        fields = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TicketRejected("malformed", "ticket payload is not JSON; ask again") from None
    if not isinstance(fields, dict) or set(fields) != {"a", "c", "e", "p", "s"}:
        raise TicketRejected("malformed", "ticket payload does not have the ticket fields")
    action, challenge, expires_at = fields["a"], fields["c"], fields["e"]
    args = fields["p"]
    if (
        fields["s"] != serial
        or not isinstance(action, str)
        or action not in _ACTION_VALUES
        or not isinstance(challenge, str)
        or len(challenge) != 2 * CHALLENGE_SIZE
        or not _HEX_RE.fullmatch(challenge)
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, int)
        or not 0 <= expires_at <= MAX_EXPIRES_AT
        or not isinstance(args, dict)
        or not all(isinstance(value, str) for value in args.values())
    ):
        raise TicketRejected("malformed", "ticket payload has a field of the wrong type")
    fields["c"] = bytes.fromhex(challenge)
    return fields


@dataclass(frozen=True)
class Receipt:
    """The charger's signed word that it applied a ticket, and the state it is now in."""

    serial: str
    challenge: bytes
    action: Action
    epoch: int
    pin_enabled: bool
    fingerprint: bytes
    bonds_removed: int = 0
    generation: int = 0
    """The PIN generation the charger is in now (`PinState.generation`)."""

    def __post_init__(self) -> None:
        _require_serial(self.serial)
        if not isinstance(self.challenge, bytes) or len(self.challenge) != CHALLENGE_SIZE:
            raise InvalidConfig(
                f"receipt challenge must be the ticket's {CHALLENGE_SIZE}-byte challenge"
            )
        try:
            object.__setattr__(self, "action", Action(self.action))
        except ValueError:
            raise InvalidConfig(f"unknown receipt action {self.action!r}") from None
        for name, value, top in (
            ("epoch", self.epoch, MAX_EPOCH),
            ("bonds_removed", self.bonds_removed, 2**32 - 1),
            ("generation", self.generation, MAX_GENERATION),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise InvalidConfig(
                    f"receipt {name} must be a whole number 0..{top}, got {value!r}"
                )
        if not isinstance(self.pin_enabled, bool):
            raise InvalidConfig(
                f"receipt pin_enabled must be true or false, got {self.pin_enabled!r}"
            )
        if not isinstance(self.fingerprint, bytes) or len(self.fingerprint) not in (
            0,
            FINGERPRINT_SIZE,
        ):
            raise InvalidConfig(
                f"receipt fingerprint must be {FINGERPRINT_SIZE} bytes (or empty when no PIN "
                f"is set), got {self.fingerprint!r}"
            )


def _receipt_tag(secret: bytes, serial: str, signed: bytes) -> bytes:
    """Truncated HMAC-SHA256 of a receipt under the charger's receipt key."""
    key = derive_key(secret, serial, PURPOSE_RECEIPT)
    return hmac.digest(key, signed, hashlib.sha256)[:TAG_SIZE]


def sign_receipt(secret: bytes, receipt: Receipt) -> bytes:
    """The receipt as bytes: 0x01 | canonical JSON | HMAC-SHA256 over both, first 16 bytes."""
    return sign_payload(secret, receipt.serial, _receipt_payload(receipt))


def sign_payload(secret: bytes, serial: str, payload: bytes) -> bytes:
    """Any payload bytes signed as charger `serial` exactly as `sign_receipt` signs a receipt.

    The charger only ever signs a checked Receipt (`sign_receipt`); this is public for the lab,
    whose fuzzing needs genuinely signed payloads no Receipt can hold (fields missing, extra or
    of the wrong type, not JSON) to show that the verifier refuses them after the MAC passes.
    """
    signed = bytes([RECEIPT_VERSION]) + payload
    return signed + _receipt_tag(secret, serial, signed)


def _receipt_payload(receipt: Receipt) -> bytes:
    """The receipt's fields as canonical JSON (docs/PROTOCOL.md, "Receipts").

    "g" (the generation) is there only when it is not 0, so a generation-0 receipt is byte for
    byte what it was before re-keying existed (its test vectors stand).
    """
    fields: dict[str, Any] = {
        "a": receipt.action.value,
        "b": receipt.bonds_removed,
        "c": receipt.challenge.hex(),
        "f": receipt.fingerprint.hex(),
        "n": receipt.epoch,
        "p": receipt.pin_enabled,
        "s": receipt.serial,
    }
    if receipt.generation:
        fields["g"] = receipt.generation
    return _canonical_json(fields)


_RECEIPT_FIELDS = frozenset({"a", "b", "c", "f", "n", "p", "s"})
"""The fields every receipt has; "g" is added when the generation is not 0."""


def verify_receipt(secret: bytes, serial: str, blob: bytes) -> Receipt:
    """The receipt in `blob` if charger `serial` signed it, else ReceiptInvalid.

    Any bytes input ends in a Receipt or ReceiptInvalid, never another exception.
    """
    _require_serial(serial)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise ReceiptInvalid(f"receipt must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < 1 + 2 + TAG_SIZE:
        raise ReceiptInvalid(
            f"receipt is {len(data)} bytes, shorter than any receipt; "
            "read it from the charger again"
        )
    if data[0] != RECEIPT_VERSION:
        raise ReceiptInvalid(
            f"receipt format version {data[0]} is not supported (expected {RECEIPT_VERSION}); "
            "update the fleet service"
        )
    signed, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(_receipt_tag(secret, serial, signed), tag):
        raise ReceiptInvalid(
            f"receipt does not verify for charger {serial!r}: it was altered, or signed by "
            "another charger; do not commit the change, read the charger's state again"
        )
    try:
        fields = json.loads(signed[1:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReceiptInvalid("receipt payload is not JSON; report a charger bug") from None
    if not isinstance(fields, dict) or set(fields) - {"g"} != _RECEIPT_FIELDS:
        raise ReceiptInvalid("receipt payload does not have the receipt fields")
    if fields.get("g", 1) == 0:
        raise ReceiptInvalid('receipt generation 0 is written by leaving "g" out')
    if fields["s"] != serial:
        raise ReceiptInvalid(f"receipt is for charger {fields['s']!r}, expected {serial!r}")
    try:
        return Receipt(
            serial=serial,
            challenge=_hex_field(fields["c"]),
            action=fields["a"],
            epoch=fields["n"],
            pin_enabled=fields["p"],
            fingerprint=_hex_field(fields["f"]),
            bonds_removed=fields["b"],
            generation=fields.get("g", 0),
        )
    except InvalidConfig as error:
        raise ReceiptInvalid(f"receipt content is invalid: {error}") from None


def _hex_field(value: object) -> bytes:
    """Lower-case hex text as bytes; InvalidConfig otherwise."""
    if not isinstance(value, str) or len(value) % 2 or not _HEX_RE.fullmatch(value):
        raise InvalidConfig(f"expected lower-case hex, got {value!r}")
    return bytes.fromhex(value)


def _require_serial(serial: object) -> None:
    """A charger serial: non-empty text of at most 255 UTF-8 bytes (the header's length byte).

    Tickets carry any serial their header can: the label's rule (limits.SERIAL_RE) is the
    factory's and the charger's, checked where a serial is made or stored."""
    if not isinstance(serial, str) or not serial:
        raise InvalidConfig(f"charger serial must be non-empty text, got {serial!r}")
    try:
        length = len(serial.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidConfig(f"charger serial {serial!r} is not valid Unicode text") from None
    if length > MAX_STRING_OCTETS:
        raise InvalidConfig(
            f"charger serial must be at most {MAX_STRING_OCTETS} UTF-8 bytes, got {length}"
        )
