"""Charger Info, the PIN of an epoch and the reveal audit, over real HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from chargepin.clock import FakeClock
from chargepin.core.attestation import AttestedState, attest
from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import factory, pins
from chargepin.fleet.models import Charger, Membership, User
from tests.helpers.fleet_accounts import APP_VERSION, login
from tests.helpers.fleet_factory import MANDATORY, OPTIONAL, Spec, claim, provision

PIN_ENDPOINTS = ("/chargers/{serial}", "/chargers/{serial}/pin?epoch=0")


def owned(client: TestClient, spec: Spec = MANDATORY) -> tuple[factory.Provisioned, dict[str, str]]:
    (made,) = provision(client, spec)
    owner = login(client, "owner@example.com")
    assert claim(client, owner, made).status_code == 201
    return made, owner


def invite(client: TestClient, serial: str, email: str, *, revoked: bool = False) -> dict[str, str]:
    """An invited user (the invitation flow is another endpoint's job; written directly here)."""
    headers = login(client, email)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        user = db.scalar(select(User).where(User.email == email))
        charger = db.scalar(select(Charger).where(Charger.serial == serial))
        assert user is not None and charger is not None
        db.add(
            Membership(
                charger_id=charger.id,
                user_id=user.id,
                role="user",
                revoked_at=dt.datetime.now(dt.UTC) if revoked else None,
            )
        )
    return headers


def set_charger(client: TestClient, serial: str, **values: object) -> None:
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        db.execute(update(Charger).where(Charger.serial == serial).values(**values))


def test_charger_info_shows_the_pin_to_owner_and_invited_user_and_audits_each(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    made, owner = owned(client)
    user = invite(client, made.serial, "user@example.com")
    pin = epoch_pin(made.secret, made.serial, 0).digits

    fleet_clock.advance(60)
    as_user = client.get(f"/chargers/{made.serial}", headers={**user, "X-App-Version": "2.4.1"})
    assert as_user.status_code == 200, as_user.text
    assert as_user.json()["role"] == "user" and as_user.json()["pin"] == pin
    assert client.get(f"/chargers/{made.serial}", headers=owner).json()["pin"] == pin
    assert client.get("/chargers", headers=user).json() == [
        {"serial": made.serial, "model": MANDATORY.model, "role": "user"}
    ]

    audit = client.get(f"/chargers/{made.serial}/reveals", headers=owner)
    assert audit.status_code == 200
    entries = audit.json()
    assert [(e["email"], e["epoch"], e["app_version"]) for e in entries] == [
        ("owner@example.com", 0, "2.3.0"),
        ("user@example.com", 0, "2.4.1"),
        ("owner@example.com", 0, "2.3.0"),  # the claim
    ]
    seen = dt.datetime.fromisoformat(entries[1]["at"])
    assert seen.timestamp() == fleet_clock.now()


def test_only_the_owner_reads_the_audit(client: TestClient) -> None:
    made, _ = owned(client)
    user = invite(client, made.serial, "user@example.com")
    response = client.get(f"/chargers/{made.serial}/reveals", headers=user)
    assert response.status_code == 403
    assert "only the charger's owner" in response.json()["detail"]


@pytest.mark.parametrize("path", [*PIN_ENDPOINTS, "/chargers/{serial}/reveals"])
def test_strangers_get_404_and_revoked_users_403(client: TestClient, path: str) -> None:
    made, _ = owned(client)
    revoked = invite(client, made.serial, "revoked@example.com", revoked=True)
    for headers, status in ((login(client, "stranger@example.com"), 404), (revoked, 403)):
        response = client.get(path.format(serial=made.serial), headers=headers)
        assert response.status_code == status
        assert "pin" not in response.json()
    assert client.get("/chargers", headers=revoked).json() == []
    unknown = client.get(path.format(serial="CP99999999"), headers=revoked)
    assert unknown.status_code == 404


@pytest.mark.parametrize("path", PIN_ENDPOINTS)
@pytest.mark.parametrize("version", [None, "1.9.9", "two", ""])
def test_pin_endpoints_tell_old_apps_to_update(
    client: TestClient, path: str, version: str | None
) -> None:
    made, owner = owned(client)
    headers = {"Authorization": owner["Authorization"]}
    if version is not None:
        headers["X-App-Version"] = version
    response = client.get(path.format(serial=made.serial), headers=headers)
    assert response.status_code == 426
    assert "update the app" in response.json()["detail"]
    assert made.secret.hex() not in response.text


def test_info_without_a_pin_needs_no_app_version(client: TestClient) -> None:
    made, owner = owned(client, OPTIONAL)
    response = client.get(
        f"/chargers/{made.serial}", headers={"Authorization": owner["Authorization"]}
    )
    assert response.status_code == 200
    info = response.json()
    assert (info["pin"], info["message"], info["pin_class"]) == (
        None,
        "PIN not enabled",
        "optional",
    )
    assert client.get(f"/chargers/{made.serial}/reveals", headers=owner).json() == []


def test_a_charger_whose_firmware_lost_pin_support_says_update_the_charger(
    client: TestClient,
) -> None:
    made, owner = owned(client, OPTIONAL)
    set_charger(client, made.serial, firmware=FirmwareVersion.parse("6.7.0"), pin_enabled=True)

    info = client.get(f"/chargers/{made.serial}", headers=owner).json()
    assert (info["pin_class"], info["pin"], info["message"]) == (
        "unsupported",
        None,
        "update the charger",
    )
    response = client.get(f"/chargers/{made.serial}/pin?epoch=0", headers=owner)
    assert response.status_code == 409
    assert "update the charger" in response.json()["detail"]


def relay(client: TestClient, headers: dict[str, str], made: Any, epoch: int) -> Any:
    """A phone relays the charger's open info after it rotated to `epoch` (derived PIN)."""
    state = AttestedState(
        epoch,
        True,
        pin_fingerprint(made.secret, made.serial, epoch_pin(made.secret, made.serial, epoch)),
    )
    body = {
        "epoch": epoch,
        "fingerprint": state.fingerprint.hex(),
        "pin_enabled": True,
        "attestation": attest(made.secret, made.serial, state).hex(),
    }
    response = client.post(f"/chargers/{made.serial}/reconcile", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_only_the_epoch_the_charger_attested_is_revealed(client: TestClient) -> None:
    """Issue 9: a member asked for epochs e ... e+999 and kept 1,000 future PINs past their
    revocation. Now only the epoch the charger attested is revealed; after a wrong PIN the app
    relays the charger's attested new epoch, and that epoch's PIN follows."""
    made, owner = owned(client)
    user = invite(client, made.serial, "user@example.com")
    set_charger(client, made.serial, epoch=7)

    assert client.get(f"/chargers/{made.serial}/pin?epoch=7", headers=user).status_code == 200
    for ahead in (8, 9, 1006, MAX_EPOCH):
        refused = client.get(f"/chargers/{made.serial}/pin?epoch={ahead}", headers=user)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "epoch_not_attested"
        assert f"has not shown epoch {ahead}" in refused.json()["detail"]
    assert relay(client, user, made, 8)["epoch"] == 8
    response = client.get(f"/chargers/{made.serial}/pin?epoch=8", headers=user)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "serial": made.serial,
        "epoch": 8,
        "pin": epoch_pin(made.secret, made.serial, 8).digits,
    }
    audit = client.get(f"/chargers/{made.serial}/reveals", headers=owner).json()
    assert [(e["email"], e["epoch"]) for e in audit[:2]] == [
        ("user@example.com", 8),
        ("user@example.com", 7),
    ]


def test_epochs_a_charger_cannot_be_in_are_refused_with_why(client: TestClient) -> None:
    made, owner = owned(client)
    set_charger(client, made.serial, epoch=7)
    response = client.get(f"/chargers/{made.serial}/pin?epoch=6", headers=owner)
    assert response.status_code == 422
    assert "never goes back" in response.json()["detail"]
    assert client.get(f"/chargers/{made.serial}/pin?epoch=-1", headers=owner).status_code == 422
    assert client.get(f"/chargers/{made.serial}/pin", headers=owner).status_code == 422


def test_a_custom_pin_holds_for_the_committed_epoch_only(client: TestClient) -> None:
    made, owner = owned(client)
    vault = client.app.state.fleet.vault  # type: ignore[attr-defined]
    custom = vault.seal(b"482915", pins.custom_pin_context(made.serial))
    set_charger(client, made.serial, epoch=3, custom_pin_ct=custom)

    assert client.get(f"/chargers/{made.serial}", headers=owner).json()["pin"] == "482915"
    now = client.get(f"/chargers/{made.serial}/pin?epoch=3", headers=owner).json()
    assert now["pin"] == "482915"
    relay(client, owner, made, 4)  # a failed attempt rotated the charger: the custom PIN is gone
    after_failure = client.get(f"/chargers/{made.serial}/pin?epoch=4", headers=owner).json()
    assert after_failure["pin"] == epoch_pin(made.secret, made.serial, 4).digits


def test_listing_needs_a_login(client: TestClient) -> None:
    assert client.get("/chargers", headers=APP_VERSION).status_code == 401
    assert client.get("/chargers/CP00000001", headers=APP_VERSION).status_code == 401


def test_an_expired_login_gets_no_pin_and_leaves_no_audit_row(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    """The reveal's fast path checks the token's expiry itself (access.live_member_by_token)."""
    made, owner = owned(client)
    path = f"/chargers/{made.serial}/pin?epoch=0"
    audit = f"/chargers/{made.serial}/reveals"
    assert client.get(path, headers=owner).status_code == 200
    reveals = len(client.get(audit, headers=owner).json())
    fleet_clock.advance(31 * 24 * 3600)
    expired = client.get(path, headers=owner)
    assert expired.status_code == 401
    assert "log in again" in expired.json()["detail"]
    fresh = login(client, "owner@example.com")
    assert len(client.get(audit, headers=fresh).json()) == reveals


def test_the_last_epoch_the_air_carries_is_served_and_the_next_refused(client: TestClient) -> None:
    """An epoch is a u32 on the air: the column holds the last one (BigInteger: PostgreSQL's
    Integer stops at 2**31 - 1), and the API refuses one past it before any look-up."""
    made, owner = owned(client)
    set_charger(client, made.serial, epoch=MAX_EPOCH - 1)
    relay(client, owner, made, MAX_EPOCH)
    response = client.get(f"/chargers/{made.serial}/pin?epoch={MAX_EPOCH}", headers=owner)
    assert response.status_code == 200, response.text
    assert response.json()["pin"] == epoch_pin(made.secret, made.serial, MAX_EPOCH).digits
    audit = client.get(f"/chargers/{made.serial}/reveals", headers=owner).json()
    assert audit[0]["epoch"] == MAX_EPOCH

    response = client.get(f"/chargers/{made.serial}/pin?epoch={MAX_EPOCH + 1}", headers=owner)
    assert response.status_code == 422
    assert f"epoch: Input should be less than or equal to {MAX_EPOCH}" in response.json()["detail"]
