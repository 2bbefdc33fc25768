"""The PIN reveal's own route (`api.chargers.RevealRoute`): every check still on the fast path,
and only requests FastAPI would accept as they are taken by it (docs/PERFORMANCE.md)."""

from __future__ import annotations

import sqlite3
import threading
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from starlette.routing import Match
from starlette.types import Scope

from chargepin.clock import FakeClock
from chargepin.core.epochs import epoch_pin
from chargepin.core.limits import MAX_EPOCH, SERIAL_MAX_LENGTH
from chargepin.fleet.api.chargers import RevealRoute
from chargepin.fleet.models import Charger, Membership, PinReveal, User
from tests.helpers.fleet_accounts import invited, login
from tests.helpers.fleet_factory import MANDATORY, claim, provision


def request(path: str, query: bytes, method: str = "GET") -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": [],
    }


def test_the_route_takes_only_a_well_formed_reveal() -> None:
    """What it does not take goes on to the documented endpoint, whose validation answers."""
    route = RevealRoute()
    match, child = route.matches(request("/chargers/CP0000001/pin", b"epoch=7"))
    assert match is Match.FULL and child["path_params"] == {"serial": "CP0000001"}
    assert route.matches(request("/chargers/CP1/pin", f"epoch={MAX_EPOCH}".encode()))[0] is (
        Match.FULL
    )
    refused = [
        request("/chargers/CP1/pin", b"epoch=7", "POST"),
        request("/chargers/CP1/pin", b"epoch=7", "HEAD"),
        request("/chargers/CP1/pin", f"epoch={MAX_EPOCH + 1}".encode()),
        request("/chargers/CP1/pin", b"epoch=-1"),
        request("/chargers/CP1/pin", b"epoch=7.0"),
        request("/chargers/CP1/pin", b"epoch="),
        request("/chargers/CP1/pin", b""),
        request("/chargers/CP1/pin", b"epoch=7&epoch=8"),
        request("/chargers/CP1/pin", b"epoch=7&x=1"),
        request("/chargers/" + "C" * (SERIAL_MAX_LENGTH + 1) + "/pin", b"epoch=7"),
        request("/chargers/CP 1/pin", b"epoch=7"),
        request("/chargers/CP\u00e91/pin", b"epoch=7"),
        request("/chargers/CP1/pin/", b"epoch=7"),
        request("/chargers/CP1", b"epoch=7"),
    ]
    for scope in refused:
        assert route.matches(scope)[0] is Match.NONE, scope


def audit_rows(client: TestClient) -> int:
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(PinReveal)) or 0)


@pytest.mark.parametrize("malformed", ["?epoch=-1", "?epoch=x", "", "?epoch=0&epoch=1"])
def test_a_malformed_reveal_is_still_answered_by_fastapi_validation(
    client: TestClient, malformed: str
) -> None:
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")
    assert claim(client, owner, made).status_code == 201
    audited = audit_rows(client)  # the claim showed the PIN
    response = client.get(f"/chargers/{made.serial}/pin{malformed}", headers=owner)
    if malformed == "?epoch=0&epoch=1":  # FastAPI reads the last: epoch 1, not attested
        assert response.status_code == 409, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_request"
    assert audit_rows(client) == audited


def test_every_check_of_the_reveal_holds_on_its_route(
    client: TestClient, fleet_clock: FakeClock
) -> None:
    """Token, app version, membership (stranger, revoked), the attested epoch, then the audit:
    each request here is well-formed, so the route answers it, not FastAPI's endpoint."""
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")
    assert claim(client, owner, made).status_code == 201
    member = invited(client, owner, made.serial, "member@example.com")
    stranger = login(client, "stranger@example.com")
    audited = audit_rows(client)  # the claim showed the PIN
    url = f"/chargers/{made.serial}/pin?epoch=0"
    app = cast(FastAPI, client.app)
    scope = request(f"/chargers/{made.serial}/pin", b"epoch=0")
    first = next(r for r in app.router.routes if r.matches(scope)[0] is Match.FULL)
    assert isinstance(first, RevealRoute)

    def refused(headers: dict[str, str], status: int, error: str, path: str = url) -> None:
        response = client.get(path, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["error"] == error

    refused({"X-App-Version": owner["X-App-Version"]}, 401, "unauthorized")
    refused({**owner, "Authorization": "Bearer not-a-token"}, 401, "unauthorized")
    refused({"Authorization": owner["Authorization"]}, 426, "update_the_app")
    refused({**owner, "X-App-Version": "0.1"}, 426, "update_the_app")
    refused(stranger, 404, "not_found")
    refused(owner, 409, "epoch_not_attested", url.replace("epoch=0", "epoch=1"))
    assert audit_rows(client) == audited

    answer = client.get(url, headers=member)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "serial": made.serial,
        "epoch": 0,
        "pin": epoch_pin(made.secret, made.serial, 0).digits,
    }
    assert audit_rows(client) == audited + 1

    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        member_id = db.scalar(select(User.id).where(User.email == "member@example.com"))
        charger_id = db.scalar(select(Charger.id).where(Charger.serial == made.serial))
        db.execute(
            update(Membership)
            .where(Membership.user_id == member_id, Membership.charger_id == charger_id)
            .values(revoked_at=func.now())
        )
    refused(member, 403, "revoked")
    fleet_clock.advance(fleet.settings.token_lifetime + 1)
    refused(owner, 401, "unauthorized")
    assert audit_rows(client) == audited + 1


def test_on_sqlite_a_reveal_never_waits_on_the_event_loop(client: TestClient) -> None:
    """While another writer holds SQLite's write lock the loop's attempt gives up at once (busy
    timeout 0), the reveal takes the thread-pool hop and waits there, the service answers
    other requests meanwhile, and the reveal is answered and audited once the lock is free."""
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    if fleet.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL waits on the loop without blocking it: test_reveal_on_postgres.py")
    loop = client.app.state.loop_reveals  # type: ignore[attr-defined]
    with loop.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 0
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")
    assert claim(client, owner, made).status_code == 201
    audited = audit_rows(client)
    answers: list[int] = []
    reveal = threading.Thread(
        target=lambda: answers.append(
            client.get(f"/chargers/{made.serial}/pin?epoch=0", headers=owner).status_code
        )
    )
    writer = sqlite3.connect(fleet.engine.url.database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the write lock, held until the COMMIT below
        reveal.start()
        while loop.gave_up == 0:  # the loop's attempt found the lock taken and gave up
            assert reveal.is_alive(), answers
            reveal.join(0.01)
        health = client.get("/health")  # answered while the reveal waits for the lock
        assert health.status_code == 200, health.text
        assert reveal.is_alive() and answers == []
        writer.execute("COMMIT")
    finally:
        writer.close()
    reveal.join(30)
    assert answers == [200]
    assert audit_rows(client) == audited + 1
