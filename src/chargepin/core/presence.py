"""Charger presence: a device proves it is charger S before the app hands it S's PIN.

Issue 9 point 8. In LE Secure Connections passkey entry the phone is the initiator and commits
to one passkey bit per round (Core spec Vol 3 Part H 2.3.5.6.3); a device that only copies a
charger's advertising is the responder, opens each commitment before it must open its own, and
learns the phone's bit of every round up to the first one it guessed wrong (the CVE-2020-26558
family). So the app types a PIN only into a device that first proved it holds the charger's
factory secret, on a fresh nonce the fleet issued and checks (the phone holds no secret and
cannot check a MAC):

    tag = HMAC-SHA256(derive_key(secret, serial, "presence"),
                      b"presence:" + nonce (16) + peer address (6, as printed)
                      + epoch (4, BE) + PIN on/off (1) + fingerprint (8)
                      + generation (4, BE))[:16]

The nonce makes the proof fresh and single use (the fleet consumes it); the peer address is
the phone's address as the charger sees it on this link, so a proof made for another link (a
relay that connected to the real charger from its own address) does not verify; the state (with
the PIN generation, which a re-key moves) makes
the proof an attestation too, a fresh one: the fleet follows it and answers the PIN of that
epoch. docs/SECURITY.md, "A fake charger", says what this does not stop.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

from chargepin.core.attestation import AttestedState
from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.errors import ChargepinError
from chargepin.core.keys import PURPOSE_PRESENCE, derive_key
from chargepin.core.limits import MAX_EPOCH, MAX_GENERATION

NONCE_SIZE: Final = 16
"""Octets of the fleet's nonce (128 random bits: never issued twice)."""

TAG_SIZE: Final = 16
"""Octets of the presence MAC."""

ADDRESS_SIZE: Final = 6
"""Octets of a Bluetooth device address."""

NONCE_TTL: Final = 60.0
"""Seconds a nonce is good for: a connect, a write and a read take well under a second on air;
a minute covers a slow phone without leaving a proof usable later."""

MAX_LIVE_NONCES: Final = 8
"""Unused, unexpired nonces one member may hold for one charger: a phone needs one per
connection; more only fills the fleet's table."""

PROOF_VERSION: Final = 1

_PROOF_FORMAT = struct.Struct("<BIB8sI16s")
PROOF_SIZE: Final = _PROOF_FORMAT.size
"""Octets the presence characteristic reads back (34)."""


class PresenceInvalid(ChargepinError):
    """A presence proof that does not verify: the device is not the charger it claims to be."""


class NonceRefusal(enum.Enum):
    """Why the fleet will not take a nonce back with a proof."""

    USED = "used"
    EXPIRED = "expired"


def nonce_refusal(*, issued_at: float, used: bool, now: float) -> NonceRefusal | None:
    """Whether a stored nonce may be spent now: never twice, never after NONCE_TTL."""
    if used:
        return NonceRefusal.USED
    if now - issued_at > NONCE_TTL or now < issued_at - NONCE_TTL:
        return NonceRefusal.EXPIRED
    return None


def address_octets(address: str) -> bytes:
    """The six octets of a device address as printed ("C0:11:22:33:44:55", most significant
    first), or PresenceInvalid saying what is wrong. A type suffix ("/P") is not part of it."""
    text = address.split("/", 1)[0].strip() if isinstance(address, str) else ""
    parts = text.split(":")
    try:
        if len(parts) != ADDRESS_SIZE or any(len(part) != 2 for part in parts):
            raise ValueError(text)
        return bytes(int(part, 16) for part in parts)
    except ValueError:
        raise PresenceInvalid(
            f"address {address!r} is not a Bluetooth address; give the phone's address on the "
            "link as six hex octets, e.g. C0:11:22:33:44:55"
        ) from None


def _message(nonce: bytes, address: str, state: AttestedState) -> bytes:
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise PresenceInvalid(f"a presence nonce is {NONCE_SIZE} octets; use the fleet's nonce")
    if isinstance(state.epoch, bool) or not 0 <= state.epoch <= MAX_EPOCH:
        raise PresenceInvalid(f"epoch {state.epoch!r} is outside 0..{MAX_EPOCH}")
    if len(state.fingerprint) != FINGERPRINT_SIZE:
        raise PresenceInvalid(f"a PIN fingerprint is {FINGERPRINT_SIZE} octets")
    if isinstance(state.generation, bool) or not 0 <= state.generation <= MAX_GENERATION:
        raise PresenceInvalid(f"generation {state.generation!r} is outside 0..{MAX_GENERATION}")
    return (
        b"presence:"
        + nonce
        + address_octets(address)
        + state.epoch.to_bytes(4, "big")
        + bytes([int(bool(state.pin_enabled))])
        + state.fingerprint
        + state.generation.to_bytes(4, "big")
    )


def presence_tag(
    secret: bytes, serial: str, nonce: bytes, address: str, state: AttestedState
) -> bytes:
    """The charger's MAC proving it holds `serial`'s secret, for this nonce, link and state."""
    key = derive_key(secret, serial, PURPOSE_PRESENCE)
    return hmac.digest(key, _message(nonce, address, state), hashlib.sha256)[:TAG_SIZE]


@dataclass(frozen=True)
class PresenceProof:
    """What the presence characteristic reads back: the state the charger proved, and the tag.

    On the air (docs/PROTOCOL.md, "Presence"): version (1) | epoch (u32 LE) | flags (1, bit 0:
    PIN on) | fingerprint (8) | generation (u32 LE) | tag (16): 34 octets.
    """

    state: AttestedState
    tag: bytes

    def encode(self) -> bytes:
        return _PROOF_FORMAT.pack(
            PROOF_VERSION,
            self.state.epoch,
            int(bool(self.state.pin_enabled)),
            self.state.fingerprint,
            self.state.generation,
            self.tag,
        )

    @classmethod
    def decode(cls, data: bytes) -> PresenceProof:
        if len(data) != PROOF_SIZE:
            raise PresenceInvalid(
                f"a presence proof is {PROOF_SIZE} octets, got {len(data)}: not a chargepin charger"
            )
        version, epoch, flags, fingerprint, generation, tag = _PROOF_FORMAT.unpack(data)
        if version != PROOF_VERSION or flags > 1:
            raise PresenceInvalid(
                f"presence proof format {version} (flags 0x{flags:02X}) unknown; update the app"
            )
        return cls(AttestedState(epoch, bool(flags), fingerprint, generation), tag)


def prove(
    secret: bytes, serial: str, nonce: bytes, address: str, state: AttestedState
) -> PresenceProof:
    """The charger's answer to `nonce` written by the phone at `address`, in `state`."""
    return PresenceProof(state, presence_tag(secret, serial, nonce, address, state))


def verify(
    secret: bytes, serial: str, nonce: bytes, address: str, proof: PresenceProof
) -> AttestedState:
    """The proven state if `proof` is charger `serial`'s answer to `nonce` on the link of the
    phone at `address`; else PresenceInvalid saying what that means for the user."""
    if not isinstance(proof.tag, bytes) or len(proof.tag) != TAG_SIZE:
        raise PresenceInvalid(f"a presence tag is {TAG_SIZE} octets")
    expected = presence_tag(secret, serial, nonce, address, proof.state)
    if not hmac.compare_digest(expected, proof.tag):
        raise PresenceInvalid(
            f"the device did not prove it holds charger {serial}'s key for this nonce on this "
            "phone's link: it may imitate the charger; do not pair with it"
        )
    return proof.state
