"""PIN epochs: the PIN of epoch n, derived from the factory secret, and its public fingerprint.

DESIGN.md, "PIN epochs": with LE Secure Connections passkey entry a fixed passkey leaks one bit
per failed attempt (Core spec Vol 3 Part H 2.3.5.6.3 commits to the passkey bit by bit), so
the hardened profile moves to epoch n+1 after every failed attempt and the bits an attacker
learned are worthless. The epoch number is public; its PIN is not derivable without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import PURPOSE_EPOCH_PIN, PURPOSE_FINGERPRINT, derive_key
from chargepin.core.limits import MAX_EPOCH, check_generation
from chargepin.core.pin import MAX_PASSKEY, PIN_LENGTH, Pin, weakness

FINGERPRINT_SIZE = 8
"""Bytes in a PIN fingerprint."""

_PIN_SPACE = MAX_PASSKEY + 1
_SAMPLE_LIMIT = (2**32 // _PIN_SPACE) * _PIN_SPACE
"""4,294,000,000: 32-bit samples at or above this are rejected so `x % 10**6` is uniform."""


def epoch_pin(secret: bytes, serial: str, epoch: int, generation: int = 0) -> Pin:
    """The PIN of `epoch` in PIN `generation` on charger `serial`: uniform over the non-weak PINs.

    k = derive_key(secret, serial, "epoch-pin"); for counter 0, 1, 2, ...:
    x = first 4 bytes (big-endian) of HMAC-SHA256(k, epoch as 8 bytes BE + counter as 4 bytes
    BE [+ generation as 4 bytes BE when it is not 0]); skip x >= 4,294,000,000; the candidate
    is x % 10**6 as six digits; skip weak ones. The epoch is at most MAX_EPOCH (u32 on the
    air); the 8-byte encoding is the published one. Generation 0 is the original sequence (its
    test vectors never change); a re-key moves to the next generation, a sequence of PINs
    nobody has seen, whatever they harvested of the old one (DECISIONS.md, "Re-key").
    """
    check_generation(generation)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise InvalidConfig(
            f"epoch must be a whole number 0..{MAX_EPOCH} (a u32 on the air), got {epoch!r}; "
            "read it from the charger's info characteristic"
        )
    key = derive_key(secret, serial, PURPOSE_EPOCH_PIN)
    tail = generation.to_bytes(4, "big") if generation else b""
    counter = 0
    while True:
        message = epoch.to_bytes(8, "big") + counter.to_bytes(4, "big") + tail
        x = int.from_bytes(hmac.digest(key, message, hashlib.sha256)[:4], "big")
        counter += 1
        if x >= _SAMPLE_LIMIT:
            continue
        candidate = f"{x % _PIN_SPACE:0{PIN_LENGTH}d}"
        if weakness(candidate) is None:
            return Pin(candidate)


def pin_fingerprint(secret: bytes, serial: str, pin: Pin) -> bytes:
    """A public 8-byte tag of the live PIN: lets the fleet tell which PIN is live, not what it is.

    First 8 bytes of HMAC-SHA256(derive_key(secret, serial, "fingerprint"), b"pin:" + digits).
    """
    if not isinstance(pin, Pin):
        raise InvalidConfig(f"pin_fingerprint needs a Pin, got {type(pin).__name__}")
    key = derive_key(secret, serial, PURPOSE_FINGERPRINT)
    digest = hmac.digest(key, b"pin:" + pin.digits.encode("ascii"), hashlib.sha256)
    return digest[:FINGERPRINT_SIZE]
