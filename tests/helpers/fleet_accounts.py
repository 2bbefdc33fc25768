"""What an app sends the fleet service in tests: its version header and a logged-in account."""

from __future__ import annotations

import datetime as dt
from weakref import WeakKeyDictionary

from fastapi.testclient import TestClient

from chargepin.fleet import accounts
from chargepin.fleet.app import FleetState
from chargepin.fleet.db import transaction
from chargepin.fleet.models import User
from chargepin.fleet.times import utc_now

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


def signed_in(client: TestClient, emails: list[str]) -> list[dict[str, str]]:
    """`made_at_once` on a test client's app, its accounts known to `login` as registered."""
    headers = made_at_once(client.app.state.fleet, emails)  # type: ignore[attr-defined]
    _registered.setdefault(client, set()).update(emails)
    return headers


def made_at_once(state: FleetState, emails: list[str]) -> list[dict[str, str]]:
    """Accounts made at once in the fleet's database as `login` leaves them (the service's own
    `accounts.register` and `accounts.start_session`: a user row, a session expiring as a
    login's does); the headers an app sends. For a test whose subject is what many accounts do
    next, not signing in: fifty registrations and logins over HTTP are 100 argon2 computations,
    most of a claim storm's time. Signing in is tested where it is the subject
    (tests/fleet/test_accounts.py, test_login_throttle.py, the attacks of issue 9).

    One argon2 hash serves them all: they share the password, so the first account's hash is
    the others' too (its salt repeats, which nothing these accounts do looks at).
    """
    if not emails or len({email.lower() for email in emails}) != len(emails):
        raise ValueError(f"made_at_once needs distinct e-mail addresses, got {emails!r}")
    expires = utc_now(state.clock) + dt.timedelta(seconds=state.settings.token_lifetime)
    headers = []
    with transaction(state.sessions) as db:
        first = accounts.register(db, state.passwords, emails[0], PASSWORD, None, state.clock.now())
        others = [
            User(email=email.lower(), password_hash=first.password_hash) for email in emails[1:]
        ]
        db.add_all(others)
        db.flush()
        for user in [first, *others]:
            token = accounts.start_session(db, user, expires)
            headers.append({"Authorization": f"Bearer {token}", **APP_VERSION})
    return headers
