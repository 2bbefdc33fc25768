"""The charger's credentials on its OCPP link: identity, Basic auth password, header.

OCPP 2.0.1 security profiles 1 and 2 (Part 2, A00.FR.2xx): HTTP Basic auth with the Charging
Station's identity as username and a 16-40 character password. Ours is derived from the factory
secret, so the fleet can check it without storing it and a third-party CSMS can be given it
(`chargepin charger csms-password`). SetVariables on SecurityCtrlr.BasicAuthPassword replaces
it; the charger then keeps the new one in its state file (charger/store.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import Final

from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import PURPOSE_CSMS_PASSWORD, derive_key
from chargepin.core.limits import serial_problem

PASSWORD_MIN: Final = 16
PASSWORD_MAX: Final = 40
"""OCPP 2.0.1 SecurityCtrlr.BasicAuthPassword: passwordString of 16 to 40 characters."""

DERIVED_OCTETS: Final = 30
"""HMAC octets kept: 30 octets are 40 base64url characters without padding (240 bits)."""

IDENTITY_MAX: Final = 48
"""OCPP 2.0.1 identity: at most 48 characters, no colon (it is the Basic auth username)."""

_PASSWORD_RE: Final = re.compile(r"[\x21-\x7e]+")
"""Printable ASCII without space: what survives every HTTP stack in a Basic auth header."""


def csms_password(secret: bytes, serial: str) -> str:
    """The derived Basic auth password of charger `serial` (docs/PROTOCOL.md test vector).

    base64url, unpadded, of the first 30 octets of
    HMAC-SHA256(derive_key(secret, serial, "csms-password"), b"csms-password").
    """
    key = derive_key(secret, serial, PURPOSE_CSMS_PASSWORD)
    mac = hmac.new(key, PURPOSE_CSMS_PASSWORD.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:DERIVED_OCTETS]).decode("ascii").rstrip("=")


def password_problem(password: object) -> str | None:
    """What is wrong with `password` as a BasicAuthPassword, or None when nothing is."""
    if not isinstance(password, str):
        return f"the password must be text, got {type(password).__name__}"
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return (
            f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters "
            f"(OCPP 2.0.1 BasicAuthPassword), got {len(password)}"
        )
    if not _PASSWORD_RE.fullmatch(password):
        return "the password may hold printable ASCII characters only, without spaces"
    return None


def check_password(password: object) -> str:
    """`password` if it is a valid BasicAuthPassword, else InvalidConfig saying why."""
    problem = password_problem(password)
    if problem is not None:
        raise InvalidConfig(problem)
    assert isinstance(password, str)
    return password


def basic_authorization(identity: str, password: str) -> str:
    """The `Authorization` header value: Basic base64(identity ":" password) (RFC 7617)."""
    if not identity or ":" in identity or len(identity) > IDENTITY_MAX:
        raise InvalidConfig(
            f"station identity {identity!r} cannot be a Basic auth username: use 1 to "
            f"{IDENTITY_MAX} characters without ':'"
        )
    check_password(password)
    token = base64.b64encode(f"{identity}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


# ---------------------------------------------------------------- the CSMS's side (the fleet)

MAX_AUTH_HEADER: Final = 512
"""An Authorization header longer than this is refused unread (a serial and a password are
far shorter)."""


def new_password() -> str:
    """A fresh 40-character password for SetVariables `SecurityCtrlr.BasicAuthPassword`: 30
    random octets in base64url, the same alphabet and length as the derived one."""
    return base64.urlsafe_b64encode(secrets.token_bytes(DERIVED_OCTETS)).decode("ascii")


def rotated_password_digest(password: str) -> bytes:
    """What a CSMS stores of a password it set on a charger: SHA-256 of its UTF-8 octets.

    A rotated password is 40 random characters (240 bits), so a fast hash is enough: nobody can
    search that space, and the check stays cheap on every connect.
    """
    return hashlib.sha256(password.encode("utf-8")).digest()


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic ...` header, or None if it is not one.

    The username is a charger serial (core.limits) and may not hold a colon (RFC 7617); anything
    malformed is None, never an exception: the caller refuses the handshake.
    """
    if not header or len(header) > MAX_AUTH_HEADER:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon or serial_problem(username) is not None:
        return None
    return username, password


def password_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison of two passwords (as UTF-8 octets)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def digest_matches(presented: str, digest: bytes) -> bool:
    """Constant-time check of a presented password against a stored rotated digest."""
    return hmac.compare_digest(rotated_password_digest(presented), digest)
