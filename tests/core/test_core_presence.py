"""Charger presence (chargepin.core.presence): the proof, its layout and the nonce rule."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chargepin.core.attestation import AttestedState
from chargepin.core.keys import PURPOSE_PRESENCE, derive_key
from chargepin.core.presence import (
    NONCE_SIZE,
    NONCE_TTL,
    PROOF_SIZE,
    NonceRefusal,
    PresenceInvalid,
    PresenceProof,
    address_octets,
    nonce_refusal,
    presence_tag,
    prove,
    verify,
)

SECRET = bytes(range(32))
SERIAL = "CP-0001"
NONCE = bytes(range(0x10, 0x20))
ADDRESS = "C0:11:22:33:44:55"
STATE = AttestedState(epoch=7, pin_enabled=True, fingerprint=bytes.fromhex("0011223344556677"))

VECTOR_TAG = "3e4ae0514172733910c1744561c55e52"
VECTOR_PROOF = "010700000001001122334455667700000000" + VECTOR_TAG
"""docs/PROTOCOL.md, "Presence": the tag and the characteristic's value for these inputs."""


def recipe_tag() -> bytes:
    """The tag computed from docs/PROTOCOL.md's recipe alone (HKDF, HMAC), not by the code."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chargepin/v1/presence/CP-0001"
    ).derive(SECRET)
    message = (
        b"presence:"
        + NONCE
        + bytes.fromhex("C01122334455")
        + (7).to_bytes(4, "big")
        + b"\x01"
        + STATE.fingerprint
        + (0).to_bytes(4, "big")  # the generation
    )
    return hmac.digest(key, message, hashlib.sha256)[:16]


def test_vector_from_the_documented_recipe() -> None:
    assert recipe_tag().hex() == VECTOR_TAG
    assert presence_tag(SECRET, SERIAL, NONCE, ADDRESS, STATE).hex() == VECTOR_TAG
    proof = prove(SECRET, SERIAL, NONCE, ADDRESS, STATE)
    assert proof.encode().hex() == VECTOR_PROOF and len(proof.encode()) == PROOF_SIZE == 34
    assert PresenceProof.decode(bytes.fromhex(VECTOR_PROOF)) == proof


def test_a_re_keyed_charger_proves_its_generation() -> None:
    """docs/PROTOCOL.md, "Test vectors": generation 2 is on the air and under the tag."""
    state = dataclasses.replace(STATE, generation=2)
    proof = prove(SECRET, SERIAL, NONCE, ADDRESS, state)
    assert proof.encode().hex() == (
        "010700000001001122334455667702000000" + "1fbe851aa5f6b7fd2292f34fb1f523b9"
    )
    assert verify(SECRET, SERIAL, NONCE, ADDRESS, PresenceProof.decode(proof.encode())) == state


def test_a_genuine_proof_verifies_and_gives_the_proven_state() -> None:
    proof = prove(SECRET, SERIAL, NONCE, ADDRESS, STATE)
    assert verify(SECRET, SERIAL, NONCE, ADDRESS, proof) == STATE
    # The address is compared as octets: the case it is printed in does not matter.
    assert verify(SECRET, SERIAL, NONCE, ADDRESS.lower(), proof) == STATE


OTHER_SECRET = bytes(32)


@pytest.mark.parametrize(
    ("secret", "serial", "nonce", "address", "state"),
    [
        (OTHER_SECRET, SERIAL, NONCE, ADDRESS, STATE),
        (SECRET, "CP-0002", NONCE, ADDRESS, STATE),
        (SECRET, SERIAL, bytes(NONCE_SIZE), ADDRESS, STATE),
        (SECRET, SERIAL, NONCE, "C0:11:22:33:44:56", STATE),
        (SECRET, SERIAL, NONCE, ADDRESS, dataclasses.replace(STATE, epoch=8)),
        (SECRET, SERIAL, NONCE, ADDRESS, dataclasses.replace(STATE, pin_enabled=False)),
        (SECRET, SERIAL, NONCE, ADDRESS, dataclasses.replace(STATE, fingerprint=bytes(8))),
        (SECRET, SERIAL, NONCE, ADDRESS, dataclasses.replace(STATE, generation=1)),
    ],
    ids=[
        "other-key",
        "other-serial",
        "other-nonce",
        "other-link",
        "later-epoch",
        "pin-off",
        "other-pin",
        "other-generation",
    ],
)
def test_a_proof_vouches_for_its_own_charger_nonce_link_and_state_only(
    secret: bytes, serial: str, nonce: bytes, address: str, state: AttestedState
) -> None:
    """A proof made by another charger, for another nonce, on another phone's link (a relay),
    or edited to claim another state, does not verify."""
    made = prove(secret, serial, nonce, address, state)
    claimed = PresenceProof(STATE, made.tag)
    with pytest.raises(PresenceInvalid, match="did not prove it holds charger CP-0001's key"):
        verify(SECRET, SERIAL, NONCE, ADDRESS, claimed)


@pytest.mark.parametrize("size", [0, 1, PROOF_SIZE - 1, PROOF_SIZE + 1, 512])
def test_garbage_of_any_size_is_not_a_proof(size: int) -> None:
    with pytest.raises(PresenceInvalid, match=f"{PROOF_SIZE} octets"):
        PresenceProof.decode(bytes(size))


def test_an_unknown_version_or_flag_says_update_the_app() -> None:
    good = bytes.fromhex(VECTOR_PROOF)
    for bad in (b"\x02" + good[1:], good[:5] + b"\x02" + good[6:]):
        with pytest.raises(PresenceInvalid, match="update the app"):
            PresenceProof.decode(bad)


@pytest.mark.parametrize(
    "address",
    ["", "C0:11:22:33:44", "C0:11:22:33:44:55:66", "C0-11-22-33-44-55", "zz:11:22:33:44:55"],
)
def test_an_address_that_is_not_one_is_refused_with_an_example(address: str) -> None:
    with pytest.raises(PresenceInvalid, match=r"e\.g\. C0:11:22:33:44:55"):
        address_octets(address)


def test_bumbles_type_suffix_is_not_part_of_the_address() -> None:
    assert address_octets("C0:11:22:33:44:55/P") == bytes.fromhex("C01122334455")


@pytest.mark.parametrize("size", [0, 15, 17])
def test_a_nonce_is_16_octets(size: int) -> None:
    with pytest.raises(PresenceInvalid, match="16 octets"):
        prove(SECRET, SERIAL, bytes(size), ADDRESS, STATE)


def test_a_nonce_is_spent_once_and_only_within_its_lifetime() -> None:
    issued = 1_000.0
    assert nonce_refusal(issued_at=issued, used=False, now=issued) is None
    assert nonce_refusal(issued_at=issued, used=False, now=issued + NONCE_TTL) is None
    assert nonce_refusal(issued_at=issued, used=True, now=issued + 1) is NonceRefusal.USED
    late = issued + NONCE_TTL + 0.001
    assert nonce_refusal(issued_at=issued, used=False, now=late) is NonceRefusal.EXPIRED
    # A clock that went back by more than a lifetime does not make an old nonce young again.
    early = issued - NONCE_TTL - 1
    assert nonce_refusal(issued_at=issued, used=False, now=early) is NonceRefusal.EXPIRED


def test_the_presence_key_is_the_documented_one() -> None:
    """docs/PROTOCOL.md, "Test vectors", derived keys."""
    assert derive_key(SECRET, SERIAL, PURPOSE_PRESENCE).hex() == (
        "95586a2cf39303ca437f92c9031da2211df4698916450956374bfe11980f0485"
    )
