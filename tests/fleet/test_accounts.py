"""Accounts over real HTTP through the ASGI app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from tests.helpers.fleet_accounts import login


def test_register_login_and_me(client: TestClient) -> None:
    headers = login(client, "Owner@Example.com")
    response = client.get("/me", headers=headers)
    assert response.status_code == 200
    assert response.json()["email"] == "owner@example.com"


def test_duplicate_registration_is_409_with_what_to_do(client: TestClient) -> None:
    body = {"email": "a@example.com", "password": "long enough password"}
    assert client.post("/register", json=body).status_code == 201
    again = client.post("/register", json=body)
    assert again.status_code == 409
    assert "log in instead" in again.json()["detail"]


def test_wrong_password_and_missing_token_are_401(client: TestClient) -> None:
    login(client, "b@example.com")
    wrong = client.post("/login", json={"email": "b@example.com", "password": "not the password"})
    assert wrong.status_code == 401
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_tokens_expire(client: TestClient, fleet_clock: FakeClock) -> None:
    headers = login(client, "c@example.com")
    fleet_clock.advance(31 * 24 * 3600)
    assert client.get("/me", headers=headers).status_code == 401


def test_malformed_bodies_get_422_with_the_reason(client: TestClient) -> None:
    response = client.post("/register", json={"email": "not-an-email", "password": "short"})
    assert response.status_code == 422
    assert "email" in response.json()["detail"]
    assert "password" in response.json()["detail"]
