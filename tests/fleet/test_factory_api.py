"""The factory line's API: admin accounts only; bundles and stickers for new chargers."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import update

from chargepin.core.epochs import epoch_pin
from chargepin.core.provisioning import ProvisioningBundle, StickerPayload
from chargepin.fleet.models import User
from tests.helpers.fleet_accounts import login

BODY = {"count": 3, "model": "Pulsar Max", "firmware": "6.11.2", "produced": "2025-09-01"}


def make_admin(client: TestClient, email: str) -> None:
    """What `chargepin fleet make-admin` does, on the service's own database."""
    with client.app.state.fleet.sessions() as db, db.begin():  # type: ignore[attr-defined]
        db.execute(update(User).where(User.email == email).values(is_admin=True))


def test_only_admin_accounts_provision(client: TestClient) -> None:
    headers = login(client, "someone@example.com")
    refused = client.post("/factory/chargers", json=BODY, headers=headers)
    assert refused.status_code == 403
    assert "secret" not in refused.text and "bundle" not in refused.text
    make_admin(client, "someone@example.com")
    made = client.post("/factory/chargers", json=BODY, headers=headers)
    assert made.status_code == 201, made.text
    chargers = made.json()
    assert len({c["serial"] for c in chargers}) == 3


def test_bundles_and_stickers_serve_commissioning(client: TestClient) -> None:
    factory = login(client, "factory@example.com")
    make_admin(client, "factory@example.com")
    [made] = client.post("/factory/chargers", json={**BODY, "count": 1}, headers=factory).json()
    bundle = ProvisioningBundle.from_json(json.dumps(made["bundle"]))
    sticker = StickerPayload.parse(made["sticker"])
    assert bundle.serial == sticker.serial == made["serial"]
    assert bundle.secret.hex() not in made["sticker"]
    owner = login(client, "owner@example.com")
    claimed = client.post("/chargers/claim", json={"payload": made["sticker"]}, headers=owner)
    assert claimed.status_code == 201, claimed.text
    assert claimed.json()["pin"] == epoch_pin(bundle.secret, bundle.serial, 0).digits


def test_bad_factory_requests_say_why(client: TestClient) -> None:
    factory = login(client, "factory@example.com")
    make_admin(client, "factory@example.com")
    too_many = client.post("/factory/chargers", json={**BODY, "count": 5000}, headers=factory)
    assert too_many.status_code == 422 and "count" in too_many.json()["detail"]
    old = client.post(
        "/factory/chargers",
        json={**BODY, "model": "Pulsar Plus", "firmware": "6.7.16"},
        headers=factory,
    )
    assert old.status_code == 422
    assert "update the charger" in old.json()["detail"]
