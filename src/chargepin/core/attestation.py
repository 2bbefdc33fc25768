"""The charger's attested state: what it publishes, with a MAC only the charger could make.

DESIGN.md, "Attested charger state": the fleet believes what it learns of a charger through a
phone (epoch, PIN on or off, PIN fingerprint) only when the charger authenticated it. The open
info carries `attestation = HMAC-SHA256(derive_key(secret, serial, "attestation"), b"state:" +
epoch (4 bytes BE) + on/off (1 byte) + fingerprint (8 bytes) [+ generation (4 bytes BE) when
it is not 0])[:16]`: bound to the charger (the key and the serial), the epoch, on/off, the live
PIN's fingerprint and the PIN generation (a generation-0 tag is what it was before re-keying).
A phone can relay a state the charger really published, and nothing else; an old attestation
claims an old epoch, which the fleet never moves back to.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.errors import ChargepinError
from chargepin.core.keys import PURPOSE_ATTESTATION, derive_key
from chargepin.core.limits import MAX_EPOCH, MAX_GENERATION

ATTESTATION_SIZE = 16
"""Bytes of the MAC on the open info (128 bits: no forgery by trial within any lifetime)."""


class AttestationInvalid(ChargepinError):
    """A relayed charger state whose MAC does not verify: not what the charger published."""


@dataclass(frozen=True)
class AttestedState:
    """A charger's state as it published it: epoch, PIN on/off, the live PIN's fingerprint."""

    epoch: int
    pin_enabled: bool
    fingerprint: bytes
    generation: int = 0


def _message(state: AttestedState) -> bytes:
    if isinstance(state.epoch, bool) or not 0 <= state.epoch <= MAX_EPOCH:
        raise AttestationInvalid(f"epoch {state.epoch!r} is outside 0..{MAX_EPOCH}")
    if len(state.fingerprint) != FINGERPRINT_SIZE:
        raise AttestationInvalid(f"a PIN fingerprint is {FINGERPRINT_SIZE} bytes")
    if isinstance(state.generation, bool) or not 0 <= state.generation <= MAX_GENERATION:
        raise AttestationInvalid(f"generation {state.generation!r} is outside 0..{MAX_GENERATION}")
    return (
        b"state:"
        + state.epoch.to_bytes(4, "big")
        + bytes([int(bool(state.pin_enabled))])
        + state.fingerprint
        + (state.generation.to_bytes(4, "big") if state.generation else b"")
    )


def attest(secret: bytes, serial: str, state: AttestedState) -> bytes:
    """The charger's MAC on `state` (it publishes it in the open info)."""
    key = derive_key(secret, serial, PURPOSE_ATTESTATION)
    return hmac.digest(key, _message(state), hashlib.sha256)[:ATTESTATION_SIZE]


def verify(secret: bytes, serial: str, state: AttestedState, tag: bytes) -> AttestedState:
    """`state` if `tag` is the charger's MAC on it, else AttestationInvalid saying what to do."""
    if not isinstance(tag, bytes) or len(tag) != ATTESTATION_SIZE:
        raise AttestationInvalid(
            f"an attestation is {ATTESTATION_SIZE} bytes; relay the charger's open info as read"
        )
    if not hmac.compare_digest(attest(secret, serial, state), tag):
        raise AttestationInvalid(
            "the attestation does not match that state: it is not what this charger "
            "published; read the charger's open info again and relay it unchanged"
        )
    return state
