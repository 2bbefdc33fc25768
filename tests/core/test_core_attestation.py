"""The charger's attested state (chargepin.core.attestation) and its place in the open info."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chargepin.core.attestation import (
    ATTESTATION_SIZE,
    AttestationInvalid,
    AttestedState,
    attest,
    verify,
)
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.protocol import InfoFlag, OpenInfo, PinModeCode, ProtocolError

SECRET = bytes(range(32))
SERIAL = "CP-0001"
STATE = AttestedState(epoch=7, pin_enabled=True, fingerprint=bytes.fromhex("0011223344556677"))


VECTOR = "ddc79f95f5f9538efc8e60a22b60808e"
"""docs/PROTOCOL.md, "Attestation": the tag of STATE under the test secret."""


def test_vector_from_the_documented_recipe() -> None:
    """Computed here from the recipe alone (HKDF, HMAC), not by the code under test."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chargepin/v1/attestation/CP-0001"
    ).derive(SECRET)
    message = b"state:" + (7).to_bytes(4, "big") + b"\x01" + STATE.fingerprint
    assert hmac.digest(key, message, hashlib.sha256)[:16].hex() == VECTOR
    assert attest(SECRET, SERIAL, STATE).hex() == VECTOR


GENERATION_VECTOR = "772c36d1a493d0c7e22a7dc4e7206e78"
"""docs/PROTOCOL.md, "Attestation": STATE in generation 3."""


def test_generation_vector_from_the_documented_recipe() -> None:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chargepin/v1/attestation/CP-0001"
    ).derive(SECRET)
    message = (
        b"state:" + (7).to_bytes(4, "big") + b"\x01" + STATE.fingerprint + (3).to_bytes(4, "big")
    )
    assert hmac.digest(key, message, hashlib.sha256)[:16].hex() == GENERATION_VECTOR
    later = dataclasses.replace(STATE, generation=3)
    assert attest(SECRET, SERIAL, later).hex() == GENERATION_VECTOR


def test_a_tag_of_one_generation_does_not_vouch_for_another() -> None:
    tag = attest(SECRET, SERIAL, STATE)
    for generation in (1, 2**32 - 1):
        with pytest.raises(AttestationInvalid):
            verify(SECRET, SERIAL, dataclasses.replace(STATE, generation=generation), tag)


def test_the_open_info_carries_the_generation_only_when_it_is_not_0() -> None:
    info = OpenInfo(
        serial=SERIAL,
        model="m",
        firmware="6.11.0",
        pin_mode=PinModeCode.MANDATORY,
        flags=InfoFlag.PIN_ENABLED,
        epoch=7,
        retry_after=0,
        fingerprint=STATE.fingerprint,
        attestation=attest(SECRET, SERIAL, STATE),
    )
    later = dataclasses.replace(
        info,
        generation=3,
        attestation=attest(SECRET, SERIAL, dataclasses.replace(STATE, generation=3)),
    )
    assert len(later.encode()) == len(info.encode()) + 4
    assert later.encode()[:-4][:-ATTESTATION_SIZE] == info.encode()[:-ATTESTATION_SIZE]
    assert OpenInfo.decode(later.encode()) == later
    assert OpenInfo.decode(info.encode()).generation == 0
    assert verify(SECRET, SERIAL, OpenInfo.decode(later.encode()).state, later.attestation)
    with pytest.raises(ProtocolError, match="generation 0 explicitly"):
        OpenInfo.decode(info.encode() + bytes(4))
    with pytest.raises(ProtocolError, match="only after an attestation"):
        dataclasses.replace(later, attestation=b"").encode()


def test_a_genuine_state_verifies() -> None:
    assert len(attest(SECRET, SERIAL, STATE)) == ATTESTATION_SIZE
    assert verify(SECRET, SERIAL, STATE, attest(SECRET, SERIAL, STATE)) == STATE


@pytest.mark.parametrize(
    "claimed",
    [
        dataclasses.replace(STATE, epoch=8),
        dataclasses.replace(STATE, epoch=MAX_EPOCH),
        dataclasses.replace(STATE, pin_enabled=False),
        dataclasses.replace(STATE, fingerprint=bytes(8)),
    ],
    ids=["later-epoch", "last-epoch", "pin-off", "other-pin"],
)
def test_a_tag_vouches_for_its_own_state_only(claimed: AttestedState) -> None:
    """Issue 9: a member relayed the live fingerprint with epoch 2**63-1 and moved everyone's
    Charger Info; a tag binds the epoch, on/off and fingerprint together."""
    with pytest.raises(AttestationInvalid, match="not what this charger published"):
        verify(SECRET, SERIAL, claimed, attest(SECRET, SERIAL, STATE))


def test_another_chargers_tag_or_a_malformed_one_is_refused() -> None:
    foreign = attest(bytes(32), SERIAL, STATE)
    with pytest.raises(AttestationInvalid):
        verify(SECRET, SERIAL, STATE, foreign)
    with pytest.raises(AttestationInvalid):
        verify(SECRET, "CP-0002", STATE, attest(SECRET, SERIAL, STATE))
    for bad in (b"", bytes(ATTESTATION_SIZE - 1), bytes(ATTESTATION_SIZE + 1)):
        with pytest.raises(AttestationInvalid, match=f"{ATTESTATION_SIZE} bytes"):
            verify(SECRET, SERIAL, STATE, bad)
    with pytest.raises(AttestationInvalid, match="outside"):
        attest(SECRET, SERIAL, dataclasses.replace(STATE, epoch=MAX_EPOCH + 1))


def info(attestation: bytes) -> OpenInfo:
    return OpenInfo(
        serial=SERIAL,
        model="Pulsar Max",
        firmware="6.11.2",
        pin_mode=PinModeCode.MANDATORY,
        flags=InfoFlag.PIN_ENABLED,
        epoch=STATE.epoch,
        retry_after=0,
        fingerprint=STATE.fingerprint,
        attestation=attestation,
    )


def test_the_open_info_carries_the_tag_after_the_strings() -> None:
    tag = attest(SECRET, SERIAL, STATE)
    encoded = info(tag).encode()
    assert encoded.endswith(tag)
    decoded = OpenInfo.decode(encoded)
    assert decoded == info(tag) and decoded.state == STATE
    # A charger that does not attest: the same bytes without the tail (older apps ignore it).
    assert OpenInfo.decode(encoded[:-ATTESTATION_SIZE]).attestation == b""
    with pytest.raises(ProtocolError, match="an attestation is 16"):
        OpenInfo.decode(encoded[:-1])
