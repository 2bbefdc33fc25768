"""Tickets: issue, seal, open, and every way the charger refuses one (chargepin.core.tickets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepin.core import tickets
from chargepin.core.errors import InvalidConfig, TicketRejected
from chargepin.core.keys import derive_key
from chargepin.core.protocol import MAX_TICKET_SIZE
from chargepin.core.tickets import (
    ARG_RULES,
    Action,
    Ticket,
    issue_ticket,
    open_ticket,
    seal_ticket,
)

SECRET = bytes(range(32))
SERIAL = "CP-0001"
CHALLENGE = bytes(range(16))
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
MAX_EXPIRES = 10**12  # a 13-digit expiry, longer than any clock will write

# The published vector (docs/PROTOCOL.md).
VECTOR_HEX = (
    "010743502d30303031000102030405060708090a0b16e88d3785601a7140287b1057bda55b513127a3c235"
    "a3c455e1365e4b4bc7680d8a32b7118301ba6894ea23385be8b66cf7372d7c7ac38bea3e95f48c2f5f2318"
    "77d020f2064b016b903a25cf664add1ae69daef44843fcd63817c9cad34f291b98d9bb88daae089c3599bb"
    "5e31dabcd765ddbdedbf8fabc4403b35674ca966d1b3bbd896c62e5a28ac49e351a1"
)

VALID_ARGS: list[tuple[Action, dict[str, str]]] = [
    (Action.ENABLE_PIN, {}),
    (Action.ENABLE_PIN, {"pin": "385172"}),
    (Action.CHANGE_PIN, {"pin": "385172"}),
    (Action.CHANGE_PIN, {"next_epoch": "1"}),
    (Action.CHANGE_PIN, {"pin": "385172", "forget_bonds": "1"}),
    (Action.CHANGE_PIN, {"next_epoch": "1", "forget_bonds": "1"}),
    (Action.DISABLE_PIN, {}),
    (Action.LIST_PHONES, {}),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4:F5"}),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4:F5/P"}),
    (Action.REMOVE_PHONE, {"all": "1"}),
    (Action.ADMIT_PAIRING, {}),
    (Action.REKEY, {}),
    # The fleet's command identity, which every action takes (core/applied_ops.py).
    *((action, {"op": "0123456789abcdef" * 2}) for action in (Action.REKEY, Action.LIST_PHONES)),
    (Action.CHANGE_PIN, {"next_epoch": "1", "op": "f" * 32}),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4:F5", "op": "0" * 32}),
]

BAD_ARGS: list[tuple[Action, dict[str, str], str]] = [
    (Action.ENABLE_PIN, {"pin": "123456"}, "too easy to guess"),
    (Action.ENABLE_PIN, {"pin": "12345"}, "exactly 6 digits"),
    (Action.ENABLE_PIN, {"next_epoch": "1"}, "does not take next_epoch"),
    (Action.CHANGE_PIN, {}, "exactly one of next_epoch or pin"),
    (Action.CHANGE_PIN, {"forget_bonds": "1"}, "exactly one of"),
    (Action.CHANGE_PIN, {"pin": "385172", "next_epoch": "1"}, "exactly one of"),
    (Action.CHANGE_PIN, {"next_epoch": "yes"}, "must be '1'"),
    (Action.CHANGE_PIN, {"pin": "385172", "forget_bonds": "0"}, "must be '1'"),
    (Action.CHANGE_PIN, {"pin": "111111"}, "too easy to guess"),
    (Action.DISABLE_PIN, {"pin": "385172"}, "takes no arguments"),
    (Action.LIST_PHONES, {"all": "1"}, "takes no arguments"),
    (Action.REMOVE_PHONE, {}, "exactly one of address or all"),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4"}, "F0:F1:F2:F3:F4:F5/P"),
    (Action.REMOVE_PHONE, {"address": "F0-F1-F2-F3-F4-F5"}, "address must look like"),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4:F5/R"}, "address must look like"),
    (Action.REMOVE_PHONE, {"address": "F0:F1:F2:F3:F4:F5", "all": "1"}, "exactly one of"),
    (Action.REMOVE_PHONE, {"serial": "x"}, "does not take serial"),
    (Action.REKEY, {"op": "0" * 31}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": "0" * 33}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": "A" * 32}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": "g" * 32}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": "0" * 31 + "\n"}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": "٠" * 32}, "32 lower-case hex digits"),
    (Action.REKEY, {"op": ""}, "32 lower-case hex digits"),
    (Action.DISABLE_PIN, {"op": "0" * 32, "pin": "385172"}, "takes no arguments"),
]


def sealed(action: Action = Action.LIST_PHONES, args: dict[str, str] | None = None) -> bytes:
    return seal_ticket(SECRET, issue_ticket(SERIAL, CHALLENGE, action, args, now=NOW))


def seal_payload(payload: bytes, serial: str = SERIAL, secret: bytes = SECRET) -> bytes:
    """Seal any payload exactly as the wire format says: what a buggy fleet could send."""
    header = bytes([1, len(serial.encode())]) + serial.encode()
    nonce = bytes(12)
    key = derive_key(secret, serial, "ticket")
    return header + nonce + AESGCM(key).encrypt(nonce, payload, header)


def reason(blob: bytes, *, now: float = NOW, challenge: bytes | None = CHALLENGE) -> str:
    with pytest.raises(TicketRejected) as caught:
        open_ticket(SECRET, SERIAL, blob, now, challenge)
    return caught.value.reason


def payload_for(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "a": "list_phones",
        "c": CHALLENGE.hex(),
        "e": NOW + 120,
        "p": {},
        "s": SERIAL,
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "args"), VALID_ARGS)
def test_round_trip_for_every_action(action: Action, args: dict[str, str]) -> None:
    ticket = issue_ticket(SERIAL, CHALLENGE, action, args, now=NOW)
    assert ticket.expires_at == NOW + 120
    opened = open_ticket(SECRET, SERIAL, seal_ticket(SECRET, ticket), NOW + 5, CHALLENGE)
    assert opened == ticket
    for name, value in args.items():
        assert opened.arg(name) == value
    assert opened.arg("nothing") is None


def test_every_action_is_covered() -> None:
    assert {action for action, _ in VALID_ARGS} == set(Action) == set(ARG_RULES)


def test_vector() -> None:
    ticket = issue_ticket(
        SERIAL, CHALLENGE, "change_pin", {"pin": "385172", "forget_bonds": "1"}, now=NOW
    )
    blob = seal_ticket(SECRET, ticket, nonce=bytes(range(12)))
    assert blob.hex() == VECTOR_HEX
    assert open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE) == ticket


def test_payload_is_canonical_json() -> None:
    blob = sealed(Action.CHANGE_PIN, {"pin": "385172", "forget_bonds": "1"})
    key = derive_key(SECRET, SERIAL, "ticket")
    header_length = 2 + len(SERIAL)
    payload = AESGCM(key).decrypt(
        blob[header_length : header_length + 12], blob[header_length + 12 :], blob[:header_length]
    )
    assert payload == (
        b'{"a":"change_pin","c":"000102030405060708090a0b0c0d0e0f","e":1767225720,'
        b'"p":{"forget_bonds":"1","pin":"385172"},"s":"CP-0001"}'
    )


@pytest.mark.parametrize(("action", "args"), VALID_ARGS)
def test_typical_tickets_fit_in_200_bytes(action: Action, args: dict[str, str]) -> None:
    ticket = issue_ticket("PLSR-2025-00012345", CHALLENGE, action, args, now=NOW)
    # A phone's ticket (no op) fits one Bluetooth write; the fleet's commands with their op
    # travel over OCPP (DataTransfer, at most MAX_TICKET_SIZE octets) and cost 42 more.
    assert len(seal_ticket(SECRET, ticket)) < (200 if "op" not in args else 250)


def test_the_longest_command_ticket_fits_a_data_transfer() -> None:
    args = {"pin": "385172", "forget_bonds": "1", "op": "f" * 32}
    ticket = issue_ticket("S" * 32, CHALLENGE, Action.CHANGE_PIN, args, now=MAX_EXPIRES)
    assert len(seal_ticket(SECRET, ticket)) <= 256 < MAX_TICKET_SIZE


def test_every_seal_uses_a_fresh_nonce() -> None:
    ticket = issue_ticket(SERIAL, CHALLENGE, Action.LIST_PHONES, None, now=NOW)
    assert seal_ticket(SECRET, ticket) != seal_ticket(SECRET, ticket)


def test_repr_hides_a_custom_pin() -> None:
    ticket = issue_ticket(SERIAL, CHALLENGE, Action.ENABLE_PIN, {"pin": "385172"}, now=NOW)
    assert "385172" not in repr(ticket)
    assert "******" in repr(ticket)


def test_args_are_sorted_and_addresses_upper_cased() -> None:
    ticket = Ticket(
        SERIAL,
        CHALLENGE,
        Action.CHANGE_PIN,
        (("pin", "385172"), ("forget_bonds", "1")),
        expires_at=NOW,
    )
    assert ticket.args == (("forget_bonds", "1"), ("pin", "385172"))
    remove = issue_ticket(
        SERIAL, CHALLENGE, Action.REMOVE_PHONE, {"address": "f0:f1:f2:f3:f4:0a/P"}, now=NOW
    )
    assert remove.arg("address") == "F0:F1:F2:F3:F4:0A/P"


# ---- issuing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "args", "message_part"), BAD_ARGS)
def test_issue_refuses_bad_args(action: Action, args: dict[str, str], message_part: str) -> None:
    with pytest.raises(InvalidConfig, match=message_part):
        issue_ticket(SERIAL, CHALLENGE, action, args, now=NOW)


@pytest.mark.parametrize(
    ("changes", "message_part"),
    [
        ({"serial": ""}, "serial"),
        ({"serial": "X" * 256}, "255"),
        ({"challenge": bytes(15)}, "16 bytes"),
        ({"challenge": "00" * 16}, "16 bytes"),
        ({"action": "open_sesame"}, "unknown ticket action"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": float("inf")}, "lifetime"),
        ({"now": float("nan")}, "now"),
    ],
)
def test_issue_refuses_bad_values(changes: dict[str, Any], message_part: str) -> None:
    call: dict[str, Any] = {
        "serial": SERIAL,
        "challenge": CHALLENGE,
        "action": Action.LIST_PHONES,
        "args": None,
        "now": NOW,
    }
    call.update(changes)
    with pytest.raises(InvalidConfig, match=message_part):
        issue_ticket(**call)


def test_ticket_construction_validates() -> None:
    with pytest.raises(InvalidConfig, match="more than once"):
        Ticket(SERIAL, CHALLENGE, Action.ENABLE_PIN, (("pin", "385172"),) * 2, expires_at=NOW)
    with pytest.raises(InvalidConfig, match="expires_at"):
        Ticket(SERIAL, CHALLENGE, Action.LIST_PHONES, expires_at=-1)
    with pytest.raises(InvalidConfig, match="nonce"):
        seal_ticket(SECRET, Ticket(SERIAL, CHALLENGE, Action.LIST_PHONES, expires_at=NOW), b"1")


# ---- refusals --------------------------------------------------------------------------------


def test_expired_says_how_long_ago_and_what_to_do() -> None:
    blob = sealed()
    assert open_ticket(SECRET, SERIAL, blob, NOW + 120, CHALLENGE).expires_at == NOW + 120
    with pytest.raises(TicketRejected) as caught:
        open_ticket(SECRET, SERIAL, blob, NOW + 120 + 252, CHALLENGE)
    assert caught.value.reason == "expired"
    assert "4 min 12 s ago" in caught.value.detail
    assert "new one" in caught.value.detail


def test_replay_is_refused_by_the_challenge() -> None:
    blob = sealed()
    assert reason(blob, challenge=bytes(16)) == "challenge"
    assert reason(blob, challenge=None) == "challenge"
    with pytest.raises(TicketRejected, match="read a new challenge and ask again"):
        open_ticket(SECRET, SERIAL, blob, NOW, bytes(16))


def test_foreign_serial_names_both_chargers() -> None:
    blob = seal_ticket(SECRET, issue_ticket("CP-0002", CHALLENGE, "list_phones", None, now=NOW))
    with pytest.raises(TicketRejected) as caught:
        open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE)
    assert caught.value.reason == "foreign"
    assert "for charger 'CP-0002', this is 'CP-0001'" in caught.value.detail


def test_wrong_secret_is_tampered() -> None:
    with pytest.raises(TicketRejected) as caught:
        open_ticket(bytes(32), SERIAL, sealed(), NOW, CHALLENGE)
    assert caught.value.reason == "tampered"
    assert "not issued by the fleet service" in caught.value.detail


def test_every_flipped_byte_is_refused() -> None:
    blob = sealed(Action.CHANGE_PIN, {"pin": "385172"})
    for position in range(len(blob)):
        for flip in (0x01, 0x80):
            mutated = bytearray(blob)
            mutated[position] ^= flip
            expected = {"malformed", "foreign"} if position < 2 + len(SERIAL) else {"tampered"}
            assert reason(bytes(mutated)) in expected, position


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01",
        b"\x01\x07CP-0001" + bytes(27),
        b"\x02\x07CP-0001" + bytes(40),
        b"\x01\x00" + bytes(40),
        b"\x01\xffCP-0001" + bytes(40),
        b"\x01\x07\xff\xfe-0001" + bytes(40),
    ],
)
def test_malformed_bytes(blob: bytes) -> None:
    assert reason(blob) == "malformed"


def test_truncation_and_extension_are_refused() -> None:
    blob = sealed()
    for length in range(len(blob)):
        assert reason(blob[:length]) in {"malformed", "tampered"}
    assert reason(blob + b"\x00") == "tampered"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b"{}",
        b"[" * 100_000,
        payload_for(extra=1),
        payload_for(s="CP-0002"),
        payload_for(a="open_sesame"),
        payload_for(a=["list_phones"]),
        payload_for(c="00" * 15),
        payload_for(c="zz" * 16),
        payload_for(c=" 0" * 16),
        payload_for(c=16),
        payload_for(e="1767225720"),
        payload_for(e=True),
        payload_for(e=1.5e9),
        payload_for(e=-1),
        payload_for(e=10**30),
        payload_for(p=[]),
        payload_for(p={"all": 1}),
        payload_for(p=None),
    ],
)
def test_authentic_but_malformed_payloads(payload: bytes) -> None:
    assert reason(seal_payload(payload)) == "malformed"


@pytest.mark.parametrize("payload", [b"", b"not json", payload_for(extra=1)])
def test_core_seals_any_payload_as_documented_for_the_lab(payload: bytes) -> None:
    """tickets.seal_payload (the lab's way to seal what no Ticket holds) is the wire format."""
    assert tickets.seal_payload(SECRET, SERIAL, payload, bytes(12)) == seal_payload(payload)


@pytest.mark.parametrize(("action", "args", "message_part"), BAD_ARGS)
def test_open_refuses_bad_args(action: Action, args: dict[str, str], message_part: str) -> None:
    blob = seal_payload(payload_for(a=action.value, p=args))
    with pytest.raises(TicketRejected) as caught:
        open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE)
    assert caught.value.reason == "bad_args"
    assert message_part in caught.value.detail


def test_bad_args_message_never_repeats_a_pin() -> None:
    blob = seal_payload(payload_for(a="enable_pin", p={"pin": "121212"}))
    with pytest.raises(TicketRejected) as caught:
        open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE)
    assert "121212" not in str(caught.value)


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_a_clock_that_is_not_a_number_is_refused(now: float) -> None:
    with pytest.raises(InvalidConfig, match="now"):
        open_ticket(SECRET, SERIAL, sealed(), now, CHALLENGE)


def test_non_bytes_input_is_malformed() -> None:
    assert reason("010203") == "malformed"  # type: ignore[arg-type]
    opened = open_ticket(SECRET, SERIAL, bytearray(sealed()), NOW, CHALLENGE)  # type: ignore[arg-type]
    assert opened.action is Action.LIST_PHONES


# ---- fuzzing ---------------------------------------------------------------------------------


def _open_or_reject(blob: bytes) -> None:
    try:
        open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE)
    except TicketRejected as error:
        assert error.reason in {"malformed", "foreign", "tampered", "expired", "challenge"}


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_ticket_rejected(blob: bytes) -> None:
    _open_or_reject(blob)


@settings(max_examples=300)
@given(
    st.sampled_from([sealed(a, args) for a, args in VALID_ARGS]),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(min_value=-5, max_value=5),
)
def test_mutated_tickets_only_ever_raise_ticket_rejected(
    blob: bytes, edits: list[tuple[int, int]], resize: int
) -> None:
    mutated = bytearray(blob)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    if resize < 0:
        del mutated[resize:]
    else:
        mutated += bytes(resize)
    _open_or_reject(bytes(mutated))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = json_scalars | st.lists(json_scalars, max_size=3)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "a": st.sampled_from([a.value for a in Action]) | json_values,
            "c": st.just(CHALLENGE.hex()) | json_values,
            "e": st.integers(min_value=NOW - 10, max_value=NOW + 10) | json_values,
            "p": st.dictionaries(
                st.sampled_from(["pin", "next_epoch", "forget_bonds", "address", "all", "x"]),
                st.sampled_from(["1", "385172", "123456", "F0:F1:F2:F3:F4:F5"]) | json_values,
            )
            | json_values,
            "s": st.just(SERIAL) | json_values,
            "x": json_values,
        },
    )
)
def test_authentic_payloads_only_ever_raise_ticket_rejected(fields: dict[str, Any]) -> None:
    blob = seal_payload(json.dumps(fields).encode())
    try:
        open_ticket(SECRET, SERIAL, blob, NOW, CHALLENGE)
    except TicketRejected as error:
        assert error.reason in {"malformed", "expired", "bad_args"}
