"""The presence endpoints attacked over real HTTP (issue 9 point 8): the fleet answers the
pairing PIN only for a device's proof on a fresh nonce it issued to that member, for that
charger, once. The proofs are made with the charger's own code (core.presence.prove, which the
daemon calls); tests/scenarios/test_impersonation.py does the same with the real daemon.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chargepin.clock import FakeClock
from chargepin.core.attestation import AttestedState
from chargepin.core.pin import Pin
from chargepin.core.presence import MAX_LIVE_NONCES, NONCE_TTL, PROOF_SIZE, prove
from chargepin.fleet.models import PinReveal, PresenceNonce
from chargepin.lab.live_server import serve
from tests.helpers.fleet_accounts import APP_VERSION, login
from tests.helpers.fleet_answers import assert_error_shape
from tests.helpers.fleet_records import MANDATORY, ChargerRecord, add_charger
from tests.helpers.fleet_settings import start_fleet

PHONE = "C0:11:22:33:44:55"
"""The phone's address on its link to the charger."""
RELAY = "D0:66:77:88:99:AA"
"""Another device's address: a relay that connected to the real charger itself."""


def nonce(client: TestClient, serial: str, headers: dict[str, str]) -> bytes:
    response = client.post(f"/chargers/{serial}/presence/nonces", headers=headers)
    assert response.status_code == 201, response.text
    return bytes.fromhex(response.json()["nonce"])


def proof_body(
    charger: ChargerRecord, value: bytes, *, epoch: int = 0, address: str = PHONE, serial: str = ""
) -> dict[str, Any]:
    """What the real charger answers `value` on the phone's link, and what the app sends."""
    state = AttestedState(epoch, True, charger.fingerprint(charger.pin(epoch)))
    proof = prove(charger.secret, serial or charger.serial, value, address, state)
    return {"nonce": value.hex(), "proof": proof.encode().hex(), "address": PHONE}


def ask_pin(client: TestClient, serial: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(f"/chargers/{serial}/presence/pin", json=body, headers=headers)


def join(client: TestClient, owner: dict[str, str], serial: str, email: str) -> dict[str, str]:
    code = client.post(
        f"/chargers/{serial}/invitations", json={"email": email}, headers=owner
    ).json()["code"]
    headers = login(client, email)
    assert client.post("/invitations/accept", json={"code": code}, headers=headers).is_success
    return headers


def test_a_genuine_proof_gets_the_pin_once_and_the_reveal_is_audited(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = join(client, owner, charger.serial, "user@example.com")
    for headers in (owner, user):
        body = proof_body(charger, nonce(client, charger.serial, headers))
        answer = ask_pin(client, charger.serial, body, headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"serial": charger.serial, "epoch": 0, "pin": charger.pin(0).digits}
        # Replayed (a captured nonce and proof sent again): refused, it was spent.
        assert_error_shape(
            ask_pin(client, charger.serial, body, headers), 409, "presence_nonce_used"
        )
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        assert len(list(db.scalars(select(PinReveal)))) == 2


def test_a_stranger_gets_no_nonce_and_no_pin(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    stranger = login(client, "stranger@example.com")
    answer = client.post(f"/chargers/{charger.serial}/presence/nonces", headers=stranger)
    assert_error_shape(answer, 404, "not_found")
    # With the owner's nonce and a genuine proof (a stranger who watched the air): still 404.
    body = proof_body(charger, nonce(client, charger.serial, owner))
    answer = ask_pin(client, charger.serial, body, stranger)
    assert_error_shape(answer, 404, "not_found")
    assert charger.pin(0).digits not in answer.text
    assert_error_shape(
        client.post(f"/chargers/{charger.serial}/presence/nonces", headers=APP_VERSION),
        401,
        "unauthorized",
    )


def test_a_revoked_member_gets_no_nonce_and_their_old_nonce_is_worthless(
    client: TestClient,
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    user = join(client, owner, charger.serial, "user@example.com")
    kept = nonce(client, charger.serial, user)  # taken before the revocation
    user_id = client.get("/me", headers=user).json()["id"]
    assert client.delete(f"/chargers/{charger.serial}/members/{user_id}", headers=owner).is_success
    answer = client.post(f"/chargers/{charger.serial}/presence/nonces", headers=user)
    assert_error_shape(answer, 403, "revoked")
    answer = ask_pin(client, charger.serial, proof_body(charger, kept), user)
    assert_error_shape(answer, 403, "revoked")
    assert charger.pin(0).digits not in answer.text


def test_an_expired_nonce_is_refused_and_spent(client: TestClient, fleet_clock: FakeClock) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    body = proof_body(charger, nonce(client, charger.serial, owner))
    fleet_clock.advance(NONCE_TTL + 1)
    answer = ask_pin(client, charger.serial, body, owner)
    assert_error_shape(answer, 410, "presence_nonce_expired")
    assert "ask for a new one" in answer.json()["detail"]
    assert_error_shape(ask_pin(client, charger.serial, body, owner), 409, "presence_nonce_used")


def test_a_nonce_of_another_charger_or_member_is_unknown_here(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    first = add_charger(client, owner, MANDATORY)
    second = add_charger(client, owner, MANDATORY)
    user = join(client, owner, first.serial, "user@example.com")
    # Issued for the first charger, answered by the second one's real key, sent for the second.
    body = proof_body(second, nonce(client, first.serial, owner))
    answer = ask_pin(client, second.serial, body, owner)
    assert_error_shape(answer, 422, "presence_nonce_unknown")
    # Issued to the owner, spent by an invited user.
    body = proof_body(first, nonce(client, first.serial, owner))
    assert_error_shape(ask_pin(client, first.serial, body, user), 422, "presence_nonce_unknown")
    # Neither was spent: the owner can still use it.
    assert ask_pin(client, first.serial, body, owner).status_code == 200


def test_a_proof_for_another_charger_or_link_gets_no_pin_and_spends_the_nonce(
    client: TestClient,
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    other = add_charger(client, owner, MANDATORY)
    value = nonce(client, charger.serial, owner)
    answer = ask_pin(client, charger.serial, proof_body(other, value), owner)
    assert_error_shape(answer, 422, "presence_invalid")
    assert f"did not prove it holds charger {charger.serial}" in answer.json()["detail"]
    assert charger.pin(0).digits not in answer.text
    # Spent by the failed proof: a fake cannot try again on the same nonce.
    answer = ask_pin(client, charger.serial, proof_body(charger, value), owner)
    assert_error_shape(answer, 409, "presence_nonce_used")
    for forge in (
        lambda v: proof_body(other, v, serial=charger.serial),  # another key, this serial
        lambda v: proof_body(charger, v, address=RELAY),  # the real charger, a relay's link
    ):
        answer = ask_pin(client, charger.serial, forge(nonce(client, charger.serial, owner)), owner)
        assert_error_shape(answer, 422, "presence_invalid")
        assert charger.pin(0).digits not in answer.text


GOOD_NONCE = "00" * 16
GOOD_PROOF = "00" * PROOF_SIZE


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"nonce": "00" * 15, "proof": GOOD_PROOF, "address": PHONE},
        {"nonce": "00" * 17, "proof": GOOD_PROOF, "address": PHONE},
        {"nonce": "zz" * 16, "proof": GOOD_PROOF, "address": PHONE},
        {"nonce": GOOD_NONCE, "proof": "", "address": PHONE},
        {"nonce": GOOD_NONCE, "proof": "00" * (PROOF_SIZE - 1), "address": PHONE},
        {"nonce": GOOD_NONCE, "proof": "00" * 4096, "address": PHONE},
        {"nonce": GOOD_NONCE, "proof": GOOD_PROOF, "address": "C0:11:22:33:44"},
        {"nonce": GOOD_NONCE, "proof": GOOD_PROOF, "address": "not an address"},
        {"nonce": 7, "proof": [], "address": None},
    ],
    ids=[
        "empty",
        "short-nonce",
        "long-nonce",
        "hex-garbage",
        "no-proof",
        "short-proof",
        "huge-proof",
        "short-address",
        "text-address",
        "wrong-types",
    ],
)
def test_garbage_gets_a_422_that_says_what_is_wrong(
    client: TestClient, body: dict[str, Any]
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    answer = ask_pin(client, charger.serial, body, owner)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_a_well_formed_proof_of_an_unknown_format_is_refused_as_invalid(
    client: TestClient,
) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    body = proof_body(charger, nonce(client, charger.serial, owner))
    body["proof"] = "02" + body["proof"][2:]  # version 2
    answer = ask_pin(client, charger.serial, body, owner)
    assert_error_shape(answer, 422, "presence_invalid")
    assert "update the app" in answer.json()["detail"]


def test_an_old_app_is_told_to_update(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    body = proof_body(charger, nonce(client, charger.serial, owner))
    old = {**owner, "X-App-Version": "1.9.0"}
    assert_error_shape(ask_pin(client, charger.serial, body, old), 426, "update_the_app")


def test_a_member_cannot_fill_the_nonce_table(client: TestClient, fleet_clock: FakeClock) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    for _ in range(MAX_LIVE_NONCES):
        nonce(client, charger.serial, owner)
    answer = client.post(f"/chargers/{charger.serial}/presence/nonces", headers=owner)
    assert_error_shape(answer, 429, "too_many_nonces")
    assert 1 <= int(answer.headers["Retry-After"]) <= NONCE_TTL
    fleet_clock.advance(NONCE_TTL + 1)  # they expire; the next request clears them
    nonce(client, charger.serial, owner)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        assert len(list(db.scalars(select(PresenceNonce)))) == 1


def test_the_proven_epoch_is_followed_and_its_pin_answered(client: TestClient) -> None:
    """A hardened charger moved to epoch 1 after a failed attempt the fleet never heard of: the
    proof is a fresh attestation of epoch 1, so the PIN of epoch 1 is the answer."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    body = proof_body(charger, nonce(client, charger.serial, owner), epoch=1)
    answer = ask_pin(client, charger.serial, body, owner)
    assert answer.status_code == 200, answer.text
    assert answer.json()["epoch"] == 1 and answer.json()["pin"] == charger.pin(1).digits
    assert client.get(f"/chargers/{charger.serial}", headers=owner).json()["epoch"] == 1


@pytest.mark.slow
async def test_one_nonce_sent_twenty_times_at_once_gets_one_pin(db_url: str) -> None:
    """Through a real uvicorn, in parallel: the nonce is spent in one statement, so exactly one
    request gets the PIN; the others are told it was used (or, on SQLite, that the database was
    busy), never a second PIN and never a 500."""
    fleet = start_fleet(db_url, FakeClock())
    try:
        with TestClient(fleet.app) as setup:
            owner = login(setup, "owner@example.com")
            charger = add_charger(setup, owner, MANDATORY)
            body = proof_body(charger, nonce(setup, charger.serial, owner))
        with serve(fleet.app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
                path = f"/chargers/{charger.serial}/presence/pin"
                answers = await asyncio.gather(
                    *(http.post(path, json=body, headers=owner) for _ in range(20))
                )
    finally:
        fleet.dispose()
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 503}, statuses
    assert sum(charger.pin(0).digits in a.text for a in answers) == 1


def test_a_pin_the_charger_proved_it_does_not_use_is_not_answered(client: TestClient) -> None:
    """The proof names the live PIN's fingerprint: the fleet never hands out a PIN that would
    fail on this charger (a custom PIN it never heard of), and it stays unchanged."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner, MANDATORY)
    value = nonce(client, charger.serial, owner)
    state = AttestedState(0, True, charger.fingerprint(Pin("730418")))
    proof = prove(charger.secret, charger.serial, value, PHONE, state)
    body = {"nonce": value.hex(), "proof": proof.encode().hex(), "address": PHONE}
    answer = ask_pin(client, charger.serial, body, owner)
    assert_error_shape(answer, 409, "pin_not_recognised")
    assert charger.pin(0).digits not in answer.text and "730418" not in answer.text
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        assert list(db.scalars(select(PinReveal))) == []
