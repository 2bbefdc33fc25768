"""Keys derived from a charger's factory secret, one per purpose (HKDF-SHA256, RFC 5869).

Each charger gets 32 random bytes at the factory, shared only with the fleet service. Every
mechanism that needs a key (epoch PINs, tickets, receipts, PIN fingerprints) derives its own
from that secret, the purpose and the serial, so no two mechanisms or chargers share a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from chargepin.core.errors import InvalidConfig

SECRET_SIZE = 32
"""Bytes in a factory secret."""

KEY_SIZE = 32
"""Bytes in a derived key."""

INFO_PREFIX = b"chargepin/v1/"

_ZERO_SALT = bytes(hashlib.sha256().digest_size)
"""RFC 5869 2.2: no salt is a string of HashLen zeros."""

PURPOSE_EPOCH_PIN = "epoch-pin"
PURPOSE_TICKET = "ticket"
PURPOSE_RECEIPT = "receipt"
PURPOSE_FINGERPRINT = "fingerprint"
PURPOSE_ATTESTATION = "attestation"
PURPOSE_PAIRING = "pairing"
"""The bond statement: the charger vouches for a phone it bonded (core.bond_statement)."""
PURPOSE_PRESENCE = "presence"
PURPOSE_CSMS_PASSWORD = "csms-password"
"""The OCPP Basic auth password the charger presents to its CSMS (core.csms_auth)."""


def require_secret(secret: bytes) -> bytes:
    """`secret` as bytes if it is a 32-byte factory secret, else InvalidConfig."""
    if not isinstance(secret, bytes | bytearray | memoryview):
        raise InvalidConfig(
            f"factory secret must be {SECRET_SIZE} bytes, got {type(secret).__name__}"
        )
    value = bytes(secret)
    if len(value) != SECRET_SIZE:
        raise InvalidConfig(
            f"factory secret must be exactly {SECRET_SIZE} bytes, got {len(value)}; "
            "use the secret provisioned at the factory (new_secret() makes one)"
        )
    return value


def derive_key(secret: bytes, serial: str, purpose: str) -> bytes:
    """The 32-byte key for `purpose` on charger `serial`.

    HKDF-SHA256, no salt, info = b"chargepin/v1/" + purpose + b"/" + serial (UTF-8).
    """
    ikm = require_secret(secret)
    if not isinstance(serial, str) or not serial:
        raise InvalidConfig(f"charger serial must be non-empty text, got {serial!r}")
    if not isinstance(purpose, str) or not purpose or "/" in purpose:
        raise InvalidConfig(
            f"key purpose must be non-empty text without '/', got {purpose!r}; "
            f"e.g. {PURPOSE_TICKET!r}"
        )
    info = INFO_PREFIX + purpose.encode("utf-8") + b"/" + serial.encode("utf-8")
    # RFC 5869 with the standard library's HMAC: extract with the zero salt (no salt), then the
    # one block of expand that KEY_SIZE (= SHA-256's size) needs. Byte for byte what
    # cryptography's HKDF derives (the vectors in tests/core/test_core_keys.py), in 2 us
    # instead of 40: its per-call algorithm objects were a quarter of a PIN reveal's own CPU
    # (docs/PERFORMANCE.md).
    prk = hmac.digest(_ZERO_SALT, ikm, hashlib.sha256)
    return hmac.digest(prk, info + b"\x01", hashlib.sha256)


def new_secret() -> bytes:
    """A fresh random factory secret (provisioning, tests)."""
    return secrets.token_bytes(SECRET_SIZE)
