"""The charger's bond statement (chargepin.core.bond_statement) and whose phone it makes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chargepin.core.bond_statement import (
    STATEMENT_SIZE,
    Attribution,
    BondedPhone,
    BondStatementInvalid,
    Holder,
    attribute,
    bond_id,
    decode,
    make,
    verify,
)
from chargepin.core.limits import MAX_EPOCH

SECRET = bytes(range(32))
SERIAL = "CP-0001"
LTK = bytes(range(16, 32))
BOND = bond_id(SECRET, SERIAL, LTK)
PHONE = BondedPhone("D1:22:33:44:55:66", 7, BOND)

VECTOR = "0107000000016655443322d197550327a349aff01999a010de967ce3f04b035856250904"
"""docs/PROTOCOL.md, "Bond statement": PHONE (bond of LTK 10..1f) under the test secret."""


def test_vector_from_the_documented_recipe() -> None:
    """Computed here from the recipe alone (layout, HKDF, HMAC), not by the code under test."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chargepin/v1/pairing/CP-0001"
    ).derive(SECRET)
    bond = hmac.digest(key, b"bond-id:" + LTK, hashlib.sha256)[:8]
    body = b"\x01" + (7).to_bytes(4, "little") + b"\x01" + bytes.fromhex("6655443322d1") + bond
    expected = body + hmac.digest(key, b"bond:" + body, hashlib.sha256)[:16]
    assert expected.hex() == VECTOR
    assert make(SECRET, SERIAL, PHONE).hex() == VECTOR
    assert len(expected) == STATEMENT_SIZE == 36


@pytest.mark.parametrize(
    "phone",
    [
        PHONE,
        BondedPhone("00:11:22:33:44:55/P", 0, bytes(8)),
        BondedPhone("FF:EE:DD:CC:BB:AA", MAX_EPOCH, b"\xff" * 8),
    ],
    ids=["random", "public", "last-sequence"],
)
def test_a_statement_round_trips_and_verifies(phone: BondedPhone) -> None:
    statement = make(SECRET, SERIAL, phone)
    assert decode(statement) == phone
    assert verify(SECRET, SERIAL, statement) == phone


def test_a_statement_vouches_for_its_own_address_and_charger_only() -> None:
    statement = make(SECRET, SERIAL, PHONE)
    for other in (
        BondedPhone("D1:22:33:44:55:67", 7, BOND),
        BondedPhone(PHONE.address, 8, BOND),
        BondedPhone(PHONE.address, 7, bytes(8)),
    ):
        forged = make(SECRET, SERIAL, other)[:20] + statement[20:]  # under a genuine MAC
        with pytest.raises(BondStatementInvalid, match="did not make it"):
            verify(SECRET, SERIAL, forged)
    with pytest.raises(BondStatementInvalid, match="did not make it"):
        verify(SECRET, "CP-0002", statement)
    with pytest.raises(BondStatementInvalid, match="did not make it"):
        verify(bytes(32), SERIAL, statement)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "36 octets, got 0"),
        (bytes(37), "36 octets, got 37"),
        (b"\x02" + bytes(35), "format 2 unknown"),
        (b"\x01" + bytes(4) + b"\x07" + bytes(30), "address type 7 unknown"),
    ],
)
def test_bad_bytes_say_what_is_wrong(value: bytes, message: str) -> None:
    with pytest.raises(BondStatementInvalid, match=message):
        verify(SECRET, SERIAL, value)


@pytest.mark.parametrize(
    "phone",
    [
        BondedPhone("d1:22:33:44:55:66", 1, BOND),
        BondedPhone("my phone", 1, BOND),
        BondedPhone(PHONE.address, -1, BOND),
        BondedPhone(PHONE.address, MAX_EPOCH + 1, BOND),
        BondedPhone(PHONE.address, True, BOND),
        BondedPhone(PHONE.address, 1, BOND[:7]),
    ],
)
def test_the_charger_never_states_a_malformed_phone(phone: BondedPhone) -> None:
    with pytest.raises(BondStatementInvalid):
        make(SECRET, SERIAL, phone)


def test_a_bond_id_names_one_bond() -> None:
    assert bond_id(SECRET, SERIAL, LTK) == BOND
    assert bond_id(SECRET, SERIAL, bytes(16)) != BOND  # a new pairing, a new LTK
    assert bond_id(SECRET, "CP-0002", LTK) != BOND
    with pytest.raises(BondStatementInvalid, match="long-term key"):
        bond_id(SECRET, SERIAL, b"")


A, B = b"A" * 8, b"B" * 8


@pytest.mark.parametrize(
    ("held", "user_id", "phone", "expected"),
    [
        (None, 2, BondedPhone(PHONE.address, 5, A), Attribution.RECORD),
        (Holder(2, 5, A), 2, BondedPhone(PHONE.address, 9, A), Attribution.ALREADY),
        # The same bond from a second account: a leaked statement, even a later one.
        (Holder(1, 5, A), 2, BondedPhone(PHONE.address, 5, A), Attribution.STALE),
        (Holder(1, 5, A), 2, BondedPhone(PHONE.address, 9, A), Attribution.STALE),
        # A newer bond of the address (re-paired since) takes it over; an older one does not.
        (Holder(1, 5, A), 2, BondedPhone(PHONE.address, 6, B), Attribution.RECORD),
        (Holder(1, 5, A), 2, BondedPhone(PHONE.address, 4, B), Attribution.STALE),
        (Holder(1, 5, A), 2, BondedPhone(PHONE.address, 5, B), Attribution.STALE),
        (Holder(2, 5, A), 2, BondedPhone(PHONE.address, 4, B), Attribution.ALREADY),
        (Holder(2, 5, A), 2, BondedPhone(PHONE.address, 6, B), Attribution.RECORD),
    ],
)
def test_a_bond_is_the_first_relayers_and_a_newer_bond_takes_the_address(
    held: Holder | None, user_id: int, phone: BondedPhone, expected: Attribution
) -> None:
    assert attribute(held, user_id, phone) is expected
