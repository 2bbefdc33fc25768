"""The charger's statement that it bonded a phone, and whose phone that makes it.

Issue 9: a member reported the owner's Bluetooth address as "their phone", and revoking the
member told the owner to remove their own phone. The fleet now lists as a member's phones only
addresses the charger vouched for: on an encrypted link with a phone it holds a bond for, the
charger answers a read of the bond characteristic with

    version (1) | sequence (u32 LE) | address type (1: 0 public, 1 random)
    | address (6, LSB first) | bond id (8) | MAC (16)

    bond id = HMAC-SHA256(K, b"bond-id:" + the bond's LTK)[:8]
    MAC     = HMAC-SHA256(K, b"bond:" + the 20 octets before it)[:16]
    K       = derive_key(secret, serial, "pairing")

(docs/PROTOCOL.md, "Bond statement"). The address is the peer identity address of the link's
bond as the charger stored it, never a value the phone supplies: a phone can only make the
charger vouch for the address it is bonded as. The bond id names the bond (a new pairing makes
a new LTK) without revealing its key. The sequence is the charger's count of pairings when it
answered, so statements are ordered: a new bond of an address is made after every statement
the old bond could give, and its own statements all come later still. `attribute` is the
fleet's rule: one bond belongs to the first account that relays it, and a newer bond of an
address takes it over.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from chargepin.core.errors import ChargepinError
from chargepin.core.keys import PURPOSE_PAIRING, derive_key
from chargepin.core.limits import MAX_EPOCH

STATEMENT_VERSION = 1
MAC_SIZE = 16
"""Bytes of the MAC (128 bits, as the open info's attestation)."""

BOND_ID_SIZE = 8
"""Bytes of a bond id: 64 bits, so two bonds of one address never share one by chance."""

_BODY = struct.Struct(f"<BIB6s{BOND_ID_SIZE}s")
STATEMENT_SIZE = _BODY.size + MAC_SIZE
"""Octets of the bond characteristic's value (36)."""

MAX_SEQUENCE = MAX_EPOCH
"""A sequence is a u32 on the air, as an epoch is."""

_ADDRESS = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}(/P)?", re.ASCII)
_PUBLIC, _RANDOM = 0, 1


class BondStatementInvalid(ChargepinError):
    """Bytes that are not a bond statement this charger made."""


@dataclass(frozen=True)
class BondedPhone:
    """What a statement says: the charger held bond `bond` with `address` after `sequence`
    pairings.

    `address` is upper-case, MSB first, "/P" marking a public address: the form a remove_phone
    ticket names (core.tickets).
    """

    address: str
    sequence: int
    bond: bytes


def _body(phone: BondedPhone) -> bytes:
    if not isinstance(phone.address, str) or not _ADDRESS.fullmatch(phone.address):
        raise BondStatementInvalid(
            f"address {phone.address!r} is not F0:F1:F2:F3:F4:F5 or F0:F1:F2:F3:F4:F5/P"
        )
    if isinstance(phone.sequence, bool) or not 0 <= phone.sequence <= MAX_SEQUENCE:
        raise BondStatementInvalid(f"sequence {phone.sequence!r} is outside 0..{MAX_SEQUENCE}")
    if not isinstance(phone.bond, bytes) or len(phone.bond) != BOND_ID_SIZE:
        raise BondStatementInvalid(f"a bond id is {BOND_ID_SIZE} bytes")
    public = phone.address.endswith("/P")
    octets = bytes.fromhex(phone.address[:17].replace(":", ""))[::-1]
    kind = _PUBLIC if public else _RANDOM
    return _BODY.pack(STATEMENT_VERSION, phone.sequence, kind, octets, phone.bond)


def _mac(secret: bytes, serial: str, body: bytes) -> bytes:
    key = derive_key(secret, serial, PURPOSE_PAIRING)
    return hmac.digest(key, b"bond:" + body, hashlib.sha256)[:MAC_SIZE]


def bond_id(secret: bytes, serial: str, ltk: bytes) -> bytes:
    """The id of the bond whose long-term key is `ltk`: stable for the bond, new with each
    pairing, and no help to anyone after the key."""
    if not isinstance(ltk, bytes) or not ltk:
        raise BondStatementInvalid("a bond id needs the bond's long-term key")
    key = derive_key(secret, serial, PURPOSE_PAIRING)
    return hmac.digest(key, b"bond-id:" + ltk, hashlib.sha256)[:BOND_ID_SIZE]


def make(secret: bytes, serial: str, phone: BondedPhone) -> bytes:
    """The charger's statement about `phone` (the bond characteristic's value)."""
    body = _body(phone)
    return body + _mac(secret, serial, body)


def decode(value: bytes) -> BondedPhone:
    """What a statement says, unverified (the phone shows it; only the fleet can verify)."""
    if not isinstance(value, bytes) or len(value) != STATEMENT_SIZE:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise BondStatementInvalid(
            f"a bond statement is {STATEMENT_SIZE} octets, got {size}; relay the value of the "
            "charger's bond characteristic as read"
        )
    version, sequence, kind, octets, bond = _BODY.unpack_from(value)
    if version != STATEMENT_VERSION:
        raise BondStatementInvalid(f"bond statement format {version} unknown; update the app")
    if kind not in (_PUBLIC, _RANDOM):
        raise BondStatementInvalid(f"address type {kind} unknown (0 public, 1 random)")
    address = ":".join(f"{octet:02X}" for octet in reversed(octets))
    return BondedPhone(address + ("/P" if kind == _PUBLIC else ""), sequence, bond)


def verify(secret: bytes, serial: str, value: bytes) -> BondedPhone:
    """The phone `value` vouches for if charger `serial` made it, else BondStatementInvalid."""
    phone = decode(value)
    if not hmac.compare_digest(_mac(secret, serial, value[: _BODY.size]), value[_BODY.size :]):
        raise BondStatementInvalid(
            "the bond statement's MAC does not match: this charger did not make it; read the "
            "charger's bond characteristic again after pairing and relay it unchanged"
        )
    return phone


@dataclass(frozen=True)
class Holder:
    """Whose phone the fleet believes an address is, by which bond, as of which sequence."""

    user_id: int
    sequence: int
    bond: bytes


class Attribution(enum.Enum):
    """What the fleet does with a verified statement (`attribute`)."""

    RECORD = "record"
    """New address, or a newer bond of it: this account's phone now (store the statement)."""
    ALREADY = "already"
    """This account's phone already: nothing changes."""
    STALE = "stale"
    """Another account holds this bond, or a newer bond of the address: refused."""


def attribute(held: Holder | None, user_id: int, phone: BondedPhone) -> Attribution:
    """Whether a verified statement relayed by `user_id` makes `phone.address` theirs.

    A bond belongs to the first account that relays it: the same statement (or a later one of
    the same bond) from a second account is a leaked one. A different bond of the address with
    a higher sequence is newer (the phone that re-paired under that address is the one the
    charger now knows by it) and takes the address over; an older one changes nothing.
    """
    if held is None:
        return Attribution.RECORD
    mine = held.user_id == user_id
    if phone.bond == held.bond:
        return Attribution.ALREADY if mine else Attribution.STALE
    if phone.sequence > held.sequence:
        return Attribution.RECORD
    return Attribution.ALREADY if mine else Attribution.STALE
