"""The charger's OCPP Basic auth credentials (chargepin.core.csms_auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from chargepin.core.csms_auth import (
    basic_authorization,
    check_password,
    csms_password,
    password_problem,
)
from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import derive_key, new_secret

SECRET = bytes(range(32))
VECTOR = "9oOgMysxXNnLmQt2-RneE80WWm5KLGYQUQXU4yDM"
"""docs/PROTOCOL.md, test vectors: the derived password of CP-0001."""


def test_vector_from_the_recipe() -> None:
    key = derive_key(SECRET, "CP-0001", "csms-password")
    mac = hmac.digest(key, b"csms-password", hashlib.sha256)[:30]
    recipe = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert csms_password(SECRET, "CP-0001") == recipe == VECTOR


def test_forty_url_safe_characters_and_a_valid_basic_auth_password() -> None:
    for _ in range(50):
        password = csms_password(new_secret(), "CP-0001")
        assert len(password) == 40
        assert password_problem(password) is None
        assert set(password) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_each_charger_and_secret_has_its_own() -> None:
    assert csms_password(SECRET, "CP-0001") != csms_password(SECRET, "CP-0002")
    assert csms_password(SECRET, "CP-0001") != csms_password(new_secret(), "CP-0001")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "16 to 40 characters"),
        ("x" * 41, "16 to 40 characters"),
        ("sixteen chars!!!", "printable ASCII"),
        ("motdepassé-trop-long", "printable ASCII"),
        (12345678901234567, "must be text"),
    ],
)
def test_bad_passwords_say_why(password: object, problem: str) -> None:
    assert problem in (password_problem(password) or "")
    with pytest.raises(InvalidConfig, match=problem):
        check_password(password)


def test_basic_authorization_header() -> None:
    header = basic_authorization("CP-0001", VECTOR)
    assert header == "Basic " + base64.b64encode(f"CP-0001:{VECTOR}".encode()).decode()
    with pytest.raises(InvalidConfig, match="without ':'"):
        basic_authorization("CP:0001", VECTOR)
    with pytest.raises(InvalidConfig, match="16 to 40"):
        basic_authorization("CP-0001", "short")
