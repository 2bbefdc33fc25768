"""Receipts: the charger's signed word that it applied a ticket (chargepin.core.tickets)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepin.core import tickets
from chargepin.core.epochs import pin_fingerprint
from chargepin.core.errors import InvalidConfig, ReceiptInvalid
from chargepin.core.keys import derive_key
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.pin import Pin
from chargepin.core.tickets import Action, Receipt, sign_receipt, verify_receipt

SECRET = bytes(range(32))
SERIAL = "CP-0001"
CHALLENGE = bytes(range(16))
FINGERPRINT = pin_fingerprint(SECRET, SERIAL, Pin("385172"))

# The published vector (docs/PROTOCOL.md).
VECTOR_HEX = (
    "017b2261223a226368616e67655f70696e222c2262223a322c2263223a22303030313032303330343035"
    "3036303730383039306130623063306430653066222c2266223a2236623736653230383837613232646562"
    "222c226e223a342c2270223a747275652c2273223a2243502d30303031227d8f3d4a72cd51ed76e0cec7"
    "1f85161076"
)


def receipt(**changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "serial": SERIAL,
        "challenge": CHALLENGE,
        "action": Action.CHANGE_PIN,
        "epoch": 4,
        "pin_enabled": True,
        "fingerprint": FINGERPRINT,
        "bonds_removed": 2,
    }
    fields.update(changes)
    return Receipt(**fields)


def signed_payload(payload: bytes, serial: str = SERIAL) -> bytes:
    """Sign any payload exactly as the wire format says: what a buggy charger could send."""
    body = b"\x01" + payload
    key = derive_key(SECRET, serial, "receipt")
    return body + hmac.digest(key, body, hashlib.sha256)[:16]


def test_vector() -> None:
    blob = sign_receipt(SECRET, receipt())
    assert blob.hex() == VECTOR_HEX
    assert blob[1:-16] == (
        b'{"a":"change_pin","b":2,"c":"000102030405060708090a0b0c0d0e0f",'
        b'"f":"6b76e20887a22deb","n":4,"p":true,"s":"CP-0001"}'
    )
    assert verify_receipt(SECRET, SERIAL, blob) == receipt()


REKEY_VECTOR_TAG = "a726865bdc5408b75845d0ae1c3fd3d9"
"""docs/PROTOCOL.md, "Receipts": a rekey receipt in generation 1 (the "g" field appears)."""


def test_rekey_vector() -> None:
    blob = sign_receipt(SECRET, receipt(action=Action.REKEY, generation=1, bonds_removed=0))
    assert blob[1:-16] == (
        b'{"a":"rekey","b":0,"c":"000102030405060708090a0b0c0d0e0f",'
        b'"f":"6b76e20887a22deb","g":1,"n":4,"p":true,"s":"CP-0001"}'
    )
    assert blob == signed_payload(blob[1:-16])
    assert blob[-16:].hex() == REKEY_VECTOR_TAG
    assert verify_receipt(SECRET, SERIAL, blob).generation == 1


def test_generation_0_is_written_by_leaving_it_out() -> None:
    assert b'"g"' not in sign_receipt(SECRET, receipt())
    explicit = json.loads(sign_receipt(SECRET, receipt())[1:-16])
    explicit["g"] = 0
    payload = json.dumps(explicit, separators=(",", ":"), sort_keys=True).encode()
    with pytest.raises(ReceiptInvalid, match="generation 0 is written by leaving"):
        verify_receipt(SECRET, SERIAL, signed_payload(payload))


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"pin_enabled": False, "fingerprint": b""},
        {"epoch": MAX_EPOCH, "bonds_removed": 0},
        {"serial": "Zählerschrank-7"},
        {"generation": 2**32 - 1},
    ],
)
def test_round_trip(action: Action, changes: dict[str, Any]) -> None:
    original = receipt(action=action, **changes)
    assert verify_receipt(SECRET, original.serial, sign_receipt(SECRET, original)) == original


def test_every_flipped_byte_is_refused() -> None:
    blob = sign_receipt(SECRET, receipt())
    for position in range(len(blob)):
        mutated = bytearray(blob)
        mutated[position] ^= 0x01
        with pytest.raises(ReceiptInvalid):
            verify_receipt(SECRET, SERIAL, bytes(mutated))


def test_other_charger_or_secret_is_refused_with_what_to_do() -> None:
    blob = sign_receipt(SECRET, receipt())
    for secret, serial in ((bytes(32), SERIAL), (SECRET, "CP-0002")):
        with pytest.raises(ReceiptInvalid, match="do not commit the change"):
            verify_receipt(secret, serial, blob)


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01{}" + bytes(15), b"\x02{}" + bytes(16)])
def test_malformed_blobs(blob: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(SECRET, SERIAL, blob)


def _payload(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "a": "change_pin",
        "b": 0,
        "c": CHALLENGE.hex(),
        "f": FINGERPRINT.hex(),
        "n": 1,
        "p": True,
        "s": SERIAL,
    }
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"nope",
        b"[]",
        _payload(x=1),
        _payload(s="CP-0002"),
        _payload(a="open_sesame"),
        _payload(a=[]),
        _payload(b=-1),
        _payload(b=1.0),
        _payload(c="00"),
        _payload(c="ZZ" * 16),
        _payload(f="abc"),
        _payload(f="00" * 7),
        _payload(n=-1),
        _payload(n=True),
        _payload(p=1),
    ],
)
def test_authentic_but_invalid_payloads(payload: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(SECRET, SERIAL, signed_payload(payload))


@pytest.mark.parametrize(
    "changes",
    [
        {"challenge": bytes(15)},
        {"action": "nope"},
        {"epoch": -1},
        {"epoch": MAX_EPOCH + 1},
        {"bonds_removed": True},
        {"pin_enabled": 1},
        {"fingerprint": bytes(7)},
        {"serial": ""},
    ],
)
def test_receipt_construction_validates(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig):
        receipt(**changes)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_receipt_invalid(blob: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(SECRET, SERIAL, blob)


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "f", "n", "p", "s", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.just(SERIAL),
    )
)
def test_authentic_payloads_only_ever_raise_receipt_invalid(fields: dict[str, Any]) -> None:
    with contextlib.suppress(ReceiptInvalid):
        verify_receipt(SECRET, SERIAL, signed_payload(json.dumps(fields).encode()))


@pytest.mark.parametrize("payload", [b"", b"not json", b'{"a":"list_phones"}'])
def test_core_signs_any_payload_as_documented_for_the_lab(payload: bytes) -> None:
    """tickets.sign_payload (the lab's way to sign what no Receipt holds) is the wire format."""
    assert tickets.sign_payload(SECRET, SERIAL, payload) == signed_payload(payload)
