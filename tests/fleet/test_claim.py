"""Commissioning by sticker over real HTTP: the first valid claim owns the charger."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from chargepin.clock import FakeClock
from chargepin.core.epochs import epoch_pin
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet.models import Membership, PinReveal
from tests.helpers.fleet_accounts import APP_VERSION, login, signed_in
from tests.helpers.fleet_factory import MANDATORY, OPTIONAL, claim, provision
from tests.helpers.fleet_records import charger_row

WRONG_CODE = "0000000000ZZ"


def wrong_sticker(serial: str) -> dict[str, str]:
    return {"payload": StickerPayload(serial, WRONG_CODE).encode()}


def reveals(client: TestClient) -> list[PinReveal]:
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        return list(db.scalars(select(PinReveal).order_by(PinReveal.id)))


def test_claiming_a_mandatory_charger_shows_its_pin_right_after_the_scan(
    client: TestClient,
) -> None:
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")

    response = claim(client, owner, made)

    assert response.status_code == 201, response.text
    info = response.json()
    assert info["serial"] == made.serial and info["role"] == "owner"
    assert info["pin_class"] == "mandatory" and info["pin_enabled"] is True
    assert info["pin"] == epoch_pin(made.secret, made.serial, 0).digits
    assert info["message"] == "" and info["epoch"] == 0
    (reveal,) = reveals(client)
    assert (reveal.epoch, reveal.app_version) == (0, "2.3.0")
    assert charger_row(client, made.serial).claimed_at is not None
    listed = client.get("/chargers", headers=owner).json()
    assert listed == [{"serial": made.serial, "model": MANDATORY.model, "role": "owner"}]


def test_claiming_an_optional_charger_says_the_pin_is_not_enabled(client: TestClient) -> None:
    (made,) = provision(client, OPTIONAL)
    response = claim(client, login(client, "owner@example.com"), made)

    assert response.status_code == 201, response.text
    info = response.json()
    assert info["pin_class"] == "optional"
    assert (info["pin"], info["pin_enabled"], info["message"]) == (None, False, "PIN not enabled")
    assert reveals(client) == []


def test_a_claimed_charger_answers_409_to_its_own_sticker_only(client: TestClient) -> None:
    (made,) = provision(client)
    assert claim(client, login(client, "owner@example.com"), made).status_code == 201
    other = login(client, "neighbour@example.com")

    again = claim(client, other, made)
    assert again.status_code == 409
    assert again.json()["detail"] == "this charger already has an owner; ask them to invite you"
    # Any other code is a wrong code, answered like one for an unknown serial (issue 9).
    guessed = client.post("/chargers/claim", json=wrong_sticker(made.serial), headers=other)
    assert guessed.status_code == 403
    with client.app.state.fleet.sessions() as db:  # type: ignore[attr-defined]
        assert len(list(db.scalars(select(Membership)))) == 1


def test_unknown_serials_and_wrong_codes_get_the_same_generic_answer(client: TestClient) -> None:
    (made,) = provision(client)
    headers = login(client, "someone@example.com")

    unknown = client.post("/chargers/claim", json=wrong_sticker("CP99999999"), headers=headers)
    wrong = client.post("/chargers/claim", json=wrong_sticker(made.serial), headers=headers)

    assert unknown.status_code == wrong.status_code == 403
    assert unknown.json() == wrong.json()
    assert wrong.json()["detail"].startswith("this sticker code is not valid")


def test_wrong_codes_lock_the_account_across_chargers(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    made = provision(client, count=6)
    prober = login(client, "prober@example.com")
    for item in made[:4]:
        answer = client.post("/chargers/claim", json=wrong_sticker(item.serial), headers=prober)
        assert answer.status_code == 403
    unknown = client.post("/chargers/claim", json=wrong_sticker("CP99999999"), headers=prober)
    assert unknown.status_code == 403

    # Even a valid sticker waits: the account is locked, not the charger.
    locked = claim(client, prober, made[5])
    assert locked.status_code == 429
    assert "from this account" in locked.json()["detail"]
    assert int(locked.headers["Retry-After"]) == 300
    # Someone else claims the charger the prober tried.
    assert claim(client, login(client, "honest@example.com"), made[0]).status_code == 201

    fleet_clock.advance(300)
    assert claim(client, prober, made[5]).status_code == 201


def test_claim_needs_an_app_that_can_show_the_pin(client: TestClient) -> None:
    (made,) = provision(client)
    headers = login(client, "owner@example.com")
    body = {"payload": made.sticker.encode()}
    token = {"Authorization": headers["Authorization"]}

    missing = client.post("/chargers/claim", json=body, headers=token)
    old = client.post("/chargers/claim", json=body, headers={**token, "X-App-Version": "1.9.9"})

    for response in (missing, old):
        assert response.status_code == 426
        assert "update the app to 2.0.0" in response.json()["detail"]
    assert charger_row(client, made.serial).claimed_at is None
    assert client.post("/chargers/claim", json=body, headers=headers).status_code == 201


def test_malformed_payloads_get_422_with_the_reason_and_are_not_counted(
    client: TestClient,
) -> None:
    headers = login(client, "owner@example.com")
    for _ in range(6):
        response = client.post("/chargers/claim", json={"payload": "hello"}, headers=headers)
        assert response.status_code == 422
        assert "CHARGEPIN:1:<serial>:<claim code>" in response.json()["detail"]
    assert client.post("/chargers/claim", json={}, headers=headers).status_code == 422
    (made,) = provision(client)
    assert claim(client, headers, made).status_code == 201


def test_claim_needs_a_login(client: TestClient) -> None:
    (made,) = provision(client)
    response = client.post(
        "/chargers/claim", json={"payload": made.sticker.encode()}, headers=APP_VERSION
    )
    assert response.status_code == 401


def test_simultaneous_claims_give_one_owner_and_409_to_the_rest(client: TestClient) -> None:
    """Eight installers scan the same sticker at once: one owner, seven clear 409s, no 5xx."""
    from concurrent.futures import ThreadPoolExecutor

    accounts = signed_in(client, [f"installer{i}@example.com" for i in range(8)])
    for made in provision(client, MANDATORY, count=3):  # each charger raced by all eight
        payload = {"payload": made.sticker.encode()}

        def scan(headers: dict[str, str], payload: dict[str, str] = payload) -> int:
            return client.post("/chargers/claim", json=payload, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
            statuses = sorted(pool.map(scan, accounts))
        assert statuses == [201] + [409] * (len(accounts) - 1), statuses
