"""What an app sends the fleet service in tests: its version header and a logged-in account."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from fastapi.testclient import TestClient

APP_VERSION = {"X-App-Version": "2.3.0"}
PASSWORD = "correct horse battery"

_registered: WeakKeyDictionary[TestClient, set[str]] = WeakKeyDictionary()
"""The addresses each test client registered: registering one again is a 409 the fleet counts
as a probe (docs/DECISIONS.md, "Fleet accounts"), which a test logging in again must not make."""


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Register (if new to this client) and log in; the headers an app sends."""
    registered = _registered.setdefault(client, set())
    if email not in registered:
        client.post("/register", json={"email": email, "password": password})
        registered.add(email)
    response = client.post("/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}", **APP_VERSION}


def invited(client: TestClient, owner: dict[str, str], serial: str, email: str) -> dict[str, str]:
    """`email` invited to charger `serial` by `owner`, logged in, the invitation accepted."""
    invitation = client.post(
        f"/chargers/{serial}/invitations", json={"email": email}, headers=owner
    )
    assert invitation.status_code == 201, invitation.text
    member = login(client, email)
    accepted = client.post(
        "/invitations/accept", json={"code": invitation.json()["code"]}, headers=member
    )
    assert accepted.status_code == 200, accepted.text
    return member
