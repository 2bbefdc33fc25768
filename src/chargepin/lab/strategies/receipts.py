"""Receipts as the fleet service verifies them: signed, altered, foreign, junk, and any payload
signed with the charger's key (docs/PROTOCOL.md, "Receipts")."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from hypothesis import strategies as st

from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.errors import ReceiptInvalid
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.tickets import (
    TAG_SIZE,
    Action,
    Receipt,
    sign_payload,
    sign_receipt,
    verify_receipt,
)
from chargepin.lab.strategies.json_texts import JSON_VALUES, json_texts
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.oracle import outcome
from chargepin.lab.strategies.tickets import CHALLENGES, SECRETS, SERIALS

RECEIPTS = st.builds(
    Receipt,
    serial=SERIALS,
    challenge=CHALLENGES,
    action=st.sampled_from(Action),
    epoch=st.integers(0, MAX_EPOCH),
    pin_enabled=st.booleans(),
    fingerprint=st.sampled_from([0, FINGERPRINT_SIZE]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    bonds_removed=st.integers(0, 2**32 - 1),
)


@dataclass(frozen=True)
class ReceiptCase:
    """A receipt the fleet service verifies for charger `serial`. `kind` as for tickets."""

    kind: str
    serial: str
    secret: bytes
    blob: bytes
    receipt: Receipt


_RECEIPT_KEYS = ("a", "b", "c", "f", "n", "p", "s")


@st.composite
def receipt_cases(draw: st.DrawFn) -> ReceiptCase:
    secret = draw(SECRETS, label="secret")
    receipt = draw(RECEIPTS, label="receipt")
    signed = sign_receipt(secret, receipt)
    kind = draw(
        st.sampled_from(["signed", "altered", "other-charger", "other-secret", "junk", "payload"])
    )
    blob = signed
    if kind == "altered":
        blob = draw(mutations(signed), label="altered")
    elif kind == "other-charger":
        other = draw(SERIALS.filter(lambda text: text != receipt.serial), label="other serial")
        blob = sign_receipt(secret, dataclasses.replace(receipt, serial=other))
    elif kind == "other-secret":
        blob = sign_receipt(draw(SECRETS.filter(lambda s: s != secret)), receipt)
    elif kind == "junk":
        blob = draw(st.binary(max_size=300), label="junk")
    elif kind == "payload":
        right = json.loads(signed[1:-TAG_SIZE])
        fields = {
            name: draw(st.one_of(st.just(right[name]), JSON_VALUES), label=name)
            for name in _RECEIPT_KEYS
            if draw(st.integers(0, 9), label=f"keep {name}")
        }
        payload = draw(
            st.one_of(
                st.just(json.dumps(fields).encode()),
                json_texts().map(str.encode),
                st.binary(max_size=200),
            ),
            label="payload",
        )
        blob = sign_payload(secret, receipt.serial, payload)
    return ReceiptCase(kind, receipt.serial, secret, blob, receipt)


def check_receipt(case: ReceiptCase) -> None:
    """verify_receipt answers any bytes with a Receipt or ReceiptInvalid; only what the charger
    signed verifies, and it verifies as signed."""
    verified = outcome(lambda: verify_receipt(case.secret, case.serial, case.blob), ReceiptInvalid)
    if case.kind == "signed":
        assert verified == case.receipt, f"signed {case.receipt!r}, verified {verified!r}"
    elif case.kind != "payload":
        assert isinstance(verified, ReceiptInvalid), f"altered receipt verified: {verified!r}"
    elif isinstance(verified, Receipt):
        assert verified.serial == case.serial
        again = verify_receipt(case.secret, case.serial, sign_receipt(case.secret, verified))
        assert again == verified, f"{verified!r} does not survive signing again"
