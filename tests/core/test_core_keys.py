"""Key derivation from the factory secret (chargepin.core.keys)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import SECRET_SIZE, derive_key, new_secret

SECRET = bytes(range(32))

# The published vectors (docs/PROTOCOL.md), serial "CP-0001".
KEY_VECTORS = {
    "epoch-pin": "566b322fe6584c71c52e4ffd3068db140bd99094835eae744357de9a2b910d00",
    "ticket": "ebe4d76e567c232bc963811a6efa631b3ac63f7d841b62ceee20d05f0b8488b8",
    "receipt": "7559d48c8703c94974aa0a828606a2e98cf590e4d24b70eb5d8189515d8333ec",
    "fingerprint": "0f5dde0eda9404a937bb113687fc110d78f0bd79b474bb27569c46442473cfba",
    "pairing": "3fc42525493c0ea0f20a6d4f3afaa1d9267e949492bb1c310cc2bbf08a403958",
    "csms-password": "f22611a43024f293f32e8bd410fc7e772bce5c388cc02ccb4f94e2479dedc78e",
}


def rfc5869_hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF written out from RFC 5869 with the standard library, to check the derivation."""
    prk = hmac.digest(b"\x00" * 32, ikm, hashlib.sha256)  # salt absent: HashLen zeros
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), hashlib.sha256)
        okm += block
    return okm[:length]


@pytest.mark.parametrize(("purpose", "key_hex"), KEY_VECTORS.items())
def test_vectors(purpose: str, key_hex: str) -> None:
    assert derive_key(SECRET, "CP-0001", purpose).hex() == key_hex


@pytest.mark.parametrize("purpose", KEY_VECTORS)
@pytest.mark.parametrize("serial", ["CP-0001", "SN-ÄÖÜ-7", "x"])
def test_matches_the_documented_construction(purpose: str, serial: str) -> None:
    info = b"chargepin/v1/" + purpose.encode() + b"/" + serial.encode("utf-8")
    assert derive_key(SECRET, serial, purpose) == rfc5869_hkdf_sha256(SECRET, info)


def test_keys_differ_by_purpose_serial_and_secret() -> None:
    keys = {
        derive_key(secret, serial, purpose)
        for secret in (SECRET, bytes(32))
        for serial in ("CP-0001", "CP-0002")
        for purpose in KEY_VECTORS
    }
    assert len(keys) == 2 * 2 * len(KEY_VECTORS)
    assert all(len(key) == 32 for key in keys)


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), "0" * 32, None])
def test_secret_must_be_32_bytes(secret: object) -> None:
    with pytest.raises(InvalidConfig, match="factory secret"):
        derive_key(secret, "CP-0001", "ticket")  # type: ignore[arg-type]


@pytest.mark.parametrize(("serial", "purpose"), [("", "ticket"), ("CP-1", ""), ("CP-1", "a/b")])
def test_serial_and_purpose_are_checked(serial: str, purpose: str) -> None:
    with pytest.raises(InvalidConfig):
        derive_key(SECRET, serial, purpose)


def test_bytearray_secret_is_accepted() -> None:
    from_bytearray = derive_key(bytearray(SECRET), "CP-0001", "ticket")  # type: ignore[arg-type]
    assert from_bytearray == derive_key(SECRET, "CP-0001", "ticket")


def test_new_secret() -> None:
    first, second = new_secret(), new_secret()
    assert len(first) == SECRET_SIZE
    assert first != second
