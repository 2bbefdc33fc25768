"""Issue 9, point 6: logging out, ending every login, and a password change that ends the others.

Before: a token stayed valid for its 30 days whatever the user did; there was no logout, no way
to end a lost phone's login and no password change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.core.login_throttle import ACCOUNT_LOCKOUT
from chargepin.lab.live_server import serve
from chargepin.phone import fleet_flows
from chargepin.phone.fleet_client import FleetClient, FleetRefused
from tests.helpers.fleet_accounts import PASSWORD, login
from tests.helpers.fleet_settings import start_fleet

NEW_PASSWORD = "a brand new passphrase"


def _me(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/me", headers=headers).status_code


def test_logout_ends_this_login_only(client: TestClient) -> None:
    phone = login(client, "a@example.com")
    laptop = login(client, "a@example.com")
    assert client.post("/logout", headers=phone).status_code == 204
    assert _me(client, phone) == 401
    assert _me(client, laptop) == 200
    assert client.post("/logout", headers=phone).status_code == 401


def test_a_stolen_phone_login_ends_with_revoke_all(client: TestClient) -> None:
    stolen = login(client, "a@example.com")
    mine = login(client, "a@example.com")
    other = login(client, "b@example.com")
    answer = client.post("/sessions/revoke-all", headers=mine)
    assert answer.status_code == 200
    assert answer.json() == {"sessions_ended": 2}
    assert _me(client, stolen) == _me(client, mine) == 401
    assert _me(client, other) == 200  # another account's logins are not touched
    assert _me(client, login(client, "a@example.com")) == 200


def test_a_password_change_ends_the_other_logins(client: TestClient) -> None:
    thief = login(client, "a@example.com")
    mine = login(client, "a@example.com")
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = client.post("/me/password", json=body, headers=mine)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sessions_ended": 1}
    assert _me(client, thief) == 401
    assert _me(client, mine) == 200
    old = client.post("/login", json={"email": "a@example.com", "password": PASSWORD})
    assert old.status_code == 401
    new = client.post("/login", json={"email": "a@example.com", "password": NEW_PASSWORD})
    assert new.status_code == 200


def test_a_stolen_token_cannot_guess_the_password_through_a_password_change(
    client: TestClient,
) -> None:
    """Whoever holds a token must not get unthrottled guesses at the password (a right guess
    would let them change it and end the owner's logins): wrong old passwords count like
    wrong logins, and answer 403, not 401 (the login itself is fine)."""
    thief = login(client, "a@example.com")
    answers = [
        client.post(
            "/me/password",
            json={"old_password": f"guess number {i}", "new_password": NEW_PASSWORD},
            headers=thief,
        )
        for i in range(ACCOUNT_LOCKOUT.failures + 1)
    ]
    assert [a.status_code for a in answers] == [403] * ACCOUNT_LOCKOUT.failures + [429]
    assert "old password is wrong" in answers[0].json()["detail"]
    right = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/me/password", json=right, headers=thief).status_code == 429
    assert _me(client, thief) == 200  # nothing changed, nothing ended


def test_a_new_password_must_be_long_enough(client: TestClient) -> None:
    mine = login(client, "a@example.com")
    body = {"old_password": PASSWORD, "new_password": "short"}
    answer = client.post("/me/password", json=body, headers=mine)
    assert answer.status_code == 422
    assert "new_password" in answer.json()["detail"]


@pytest.mark.parametrize("everywhere", [False, True])
async def test_the_phone_logs_out_and_forgets_its_login(
    db_url: str, fleet_clock: FakeClock, tmp_path: Path, everywhere: bool
) -> None:
    """`chargepin phone logout [--everywhere]` over real HTTP: the token ends on the fleet,
    the login file goes; with --everywhere the account's other logins end too."""
    fleet = start_fleet(db_url, fleet_clock)
    login_file = tmp_path / "login.json"
    try:
        with serve(fleet.app) as url:
            await fleet_flows.login(login_file, url, "a@example.com", PASSWORD, register=True)
            async with FleetClient(url) as other:
                await other.login("a@example.com", PASSWORD)
                ended = await fleet_flows.logout(login_file, everywhere)
                assert ended == (2 if everywhere else 1)
                assert not login_file.exists()
                if everywhere:
                    with pytest.raises(FleetRefused) as refused:
                        await other.chargers()
                    assert refused.value.status == 401
                else:
                    assert await other.chargers() == []
    finally:
        fleet.dispose()
