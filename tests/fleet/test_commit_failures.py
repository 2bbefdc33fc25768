"""A write the database does not take is an error response, never a 200 (issue 9, point 4).

Real databases, a real lock held from another connection, no mocks: with another writer holding
the lock longer than the service waits (a large `fleet provision` or `rotate-key`), withdrawing an
invitation answered 200 and the code still worked later; then a plain-text 500 once the commit
ran before the response. Accepting one invitation twice at once gave 200 and then an
IntegrityError (500).
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.fleet.app import create_app
from chargepin.fleet.vault import Vault
from chargepin.lab.live_server import serve
from chargepin.lab.write_lock import write_lock_held
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_records import add_charger, charger_row
from tests.helpers.fleet_settings import fleet_settings

WAIT = 20.0  # the longest a test polls for a real event


def fleet_app(db_url: str, clock: FakeClock, lock_timeout: float) -> FastAPI:
    return create_app(
        fleet_settings(db_url=db_url, db_lock_timeout=lock_timeout),
        vault=Vault.generate(),
        clock=clock,
    )


def invite(client: TestClient, owner: dict[str, str], serial: str, email: str) -> dict[str, Any]:
    response = client.post(f"/chargers/{serial}/invitations", json={"email": email}, headers=owner)
    assert response.status_code == 201, response.text
    invitation: dict[str, Any] = response.json()
    return invitation


def test_a_withdrawal_that_cannot_commit_is_503_not_200(
    db_url: str, fleet_clock: FakeClock
) -> None:
    app = fleet_app(db_url, fleet_clock, lock_timeout=0.5)
    with TestClient(app) as client:
        owner = login(client, "owner@example.com")
        charger = add_charger(client, owner)
        invitation = invite(client, owner, charger.serial, "guest@example.com")
        withdraw = f"/chargers/{charger.serial}/invitations/{invitation['id']}"

        with write_lock_held(db_url, "invitations"):
            refused = client.delete(withdraw, headers=owner)

        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "busy"
        assert "nothing was changed, try again" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "sql" not in refused.text.lower()
        # The answer is the truth: the invitation is still open; the retry withdraws it.
        still_open = client.get(f"/chargers/{charger.serial}/invitations", headers=owner).json()
        assert [i["id"] for i in still_open] == [invitation["id"]]
        assert client.delete(withdraw, headers=owner).status_code == 200
        guest = login(client, "guest@example.com")
        late = client.post("/invitations/accept", json={"code": invitation["code"]}, headers=guest)
        assert late.status_code == 404, late.text
        app.state.fleet.engine.dispose()


def test_a_login_whose_token_cannot_be_committed_is_503_not_a_dead_token(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """The token row is written by the commit itself (no flush before): the failed commit."""
    app = fleet_app(db_url, fleet_clock, lock_timeout=0.5)
    with TestClient(app) as client:
        login(client, "owner@example.com")
        body = {"email": "owner@example.com", "password": "correct horse battery"}
        with write_lock_held(db_url, "tokens"):
            refused = client.post("/login", json=body)
        assert refused.status_code == 503, refused.text
        assert set(refused.json()) == {"error", "detail"}
        assert "Retry-After" in refused.headers
        app.state.fleet.engine.dispose()


def test_a_custom_pin_ticket_that_cannot_commit_is_503_not_a_ticket(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """With another writer holding the lock, a custom-PIN ticket answered 200 and its pending
    state was lost: the charger applied a PIN the fleet did not know, and Charger Info showed one
    the charger did not use. Now no ticket leaves unless its pending change is committed."""
    app = fleet_app(db_url, fleet_clock, lock_timeout=0.5)
    with TestClient(app) as client:
        owner = login(client, "owner@example.com")
        charger = add_charger(client, owner)
        tickets = f"/chargers/{charger.serial}/tickets"
        body = {"action": "change_pin", "args": {"pin": "730418"}}

        with write_lock_held(db_url, "chargers"):
            refused = client.post(
                tickets, json={**body, "challenge": secrets.token_hex(16)}, headers=owner
            )

        assert refused.status_code == 503, refused.text
        assert set(refused.json()) == {"error", "detail"}  # no ticket for the phone to write
        assert charger_row(client, charger.serial).pending is None
        retried = client.post(
            tickets, json={**body, "challenge": secrets.token_hex(16)}, headers=owner
        )
        assert retried.status_code == 200, retried.text
        assert charger_row(client, charger.serial).pending is not None
        app.state.fleet.engine.dispose()


def test_one_invitation_accepted_twice_gives_409_the_second_time(client: TestClient) -> None:
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    code = invite(client, owner, charger.serial, "guest@example.com")["code"]
    guest = login(client, "guest@example.com")
    assert client.post("/invitations/accept", json={"code": code}, headers=guest).status_code == 200
    again = client.post("/invitations/accept", json={"code": code}, headers=guest)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "invitation_used"


def test_one_invitation_accepted_twice_at_once_gives_200_and_409(
    db_url: str, fleet_clock: FakeClock
) -> None:
    """Both accepts pass every check while another writer holds the lock, then race for it."""
    app = fleet_app(db_url, fleet_clock, lock_timeout=WAIT)
    engine = app.state.fleet.engine
    writes: list[str] = []
    written = threading.Condition()

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def count_writes(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            with written:
                writes.append(statement)
                written.notify_all()

    with TestClient(app) as client:
        owner = login(client, "owner@example.com")
        charger = add_charger(client, owner)
        code = invite(client, owner, charger.serial, "guest@example.com")["code"]
        guest = login(client, "guest@example.com")
        with serve(app) as base_url, ThreadPoolExecutor(2) as pool:
            with write_lock_held(db_url, "invitations", "memberships"):
                writes.clear()
                answers = [pool.submit(accept, base_url, guest, code) for _ in range(2)]
                with written:  # both requests are at their first write, waiting on the lock
                    reached = written.wait_for(lambda: len(writes) >= 2, timeout=WAIT)
                assert reached, "the accepts never reached their write"
            results = sorted((r.result().status_code, r.result().json()) for r in answers)
        members = client.get(f"/chargers/{charger.serial}/members", headers=owner).json()
    engine.dispose()
    assert [status for status, _body in results] == [200, 409], results
    assert results[1][1]["error"] == "invitation_used"
    assert [m["email"] for m in members] == ["owner@example.com", "guest@example.com"]


def accept(base_url: str, headers: dict[str, str], code: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=WAIT * 2) as http:
        return http.post("/invitations/accept", json={"code": code}, headers=headers)
