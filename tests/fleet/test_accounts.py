"""Accounts over real HTTP through the ASGI app."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from chargepin.clock import FakeClock
from chargepin.fleet.models import User
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_settings import start_fleet


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


async def test_a_request_is_committed_before_its_response_is_sent(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """A client may act on a response at once (log in right after registering, from another
    connection): what the response reports must be committed by then. Found as a multi-process
    test's login failing by chance (401 right after a 201) on a loaded machine."""
    fleet = start_fleet(db_url, fleet_clock)
    committed: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_after_checking(message: Message) -> None:
            if message["type"] == "http.response.start":  # what another connection sees now
                with fleet.state.sessions() as db:
                    user = db.scalar(select(User).where(User.email == "early@example.com"))
                committed.append(user is not None)
            await send(message)

        await fleet.app(scope, receive, send_after_checking)

    body = {"email": "early@example.com", "password": "long enough password"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fleet.local"
        ) as http:
            assert (await http.post("/register", json=body)).status_code == 201
    finally:
        fleet.dispose()
    assert committed == [True]
