"""The charger's credentials on its OCPP link: identity, Basic auth password, header.

OCPP 2.0.1 security profiles 1 and 2 (Part 2, A00.FR.2xx): HTTP Basic auth with the Charging
Station's identity as username and a 16-40 character password. Ours is derived from the factory
secret, so the fleet can check it without storing it and a third-party CSMS can be given it
(`chargepin charger csms-password`). SetVariables on SecurityCtrlr.BasicAuthPassword replaces
it; the charger then keeps the new one in its state file (charger/store.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import PURPOSE_CSMS_PASSWORD, derive_key

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
