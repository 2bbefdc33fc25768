"""The charger's OCPP Basic auth credentials (chargepin.core.csms_auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from chargepin.core.csms_auth import (
    basic_authorization,
    basic_credentials,
    check_password,
    csms_password,
    digest_matches,
    new_password,
    password_matches,
    password_problem,
    rotated_password_digest,
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


# The CSMS's side: reading a Basic header and checking what it carries.


def header(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_credentials_reads_serial_and_password() -> None:
    assert basic_credentials(header(f"CP-0001:{VECTOR}")) == ("CP-0001", VECTOR)
    # The password may hold colons (RFC 7617: the first colon separates).
    assert basic_credentials(header("CP-0001:a:b")) == ("CP-0001", "a:b")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
        header("no-colon"),
        header("bad serial!:x"),  # not a serial
        header(":password"),  # empty username
        header("CP-1:" + "x" * 600),  # too long to be ours
    ],
)
def test_basic_credentials_refuses_anything_else(value: str | None) -> None:
    assert basic_credentials(value) is None


def test_password_and_digest_checks() -> None:
    assert password_matches(VECTOR, VECTOR)
    assert not password_matches(VECTOR[:-1] + "x", VECTOR)
    assert not password_matches("", VECTOR)
    digest = rotated_password_digest("a rotated password of forty characters..")
    assert digest_matches("a rotated password of forty characters..", digest)
    assert not digest_matches(VECTOR, digest)


def test_a_new_password_is_40_fresh_characters_of_the_same_alphabet() -> None:
    made = {new_password() for _ in range(100)}
    assert len(made) == 100
    assert all(len(p) == 40 and p.replace("-", "").replace("_", "").isalnum() for p in made)
