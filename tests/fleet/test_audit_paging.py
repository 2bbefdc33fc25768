"""The audit and the security events, paged by keyset (issue 9, point 7), over real HTTP.

A member revealed the PIN 1,000 times and pushed every older reveal (the owner's own, their
first one) out of the owner's view, which showed the newest 1,000. Both lists now page with
`before` = the last id seen, newest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from chargepin.clock import FakeClock
from chargepin.fleet.db import alembic_config, make_engine, migrate
from chargepin.fleet.models import PinReveal
from chargepin.lab.live_server import serve
from chargepin.phone.fleet_client import Login
from tests.helpers.cli import invoke
from tests.helpers.fleet_accounts import APP_VERSION, invited, login
from tests.helpers.fleet_factory import MANDATORY, claim, provision
from tests.helpers.fleet_settings import start_fleet

FLOOD = 1_001


def _member(client: TestClient, owner: dict[str, str], serial: str, email: str) -> dict[str, str]:
    return invited(client, owner, serial, email)


def _all_pages(
    client: TestClient, path: str, headers: dict[str, str], limit: int, between: Any = None
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    before: int | None = None
    for _page in range(100):  # a cursor that is ignored would page forever
        params: dict[str, int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= limit
        seen += page
        if len(page) < limit:
            return seen
        before = page[-1]["id"]
        if between is not None:
            between()
    raise AssertionError("100 pages and no end: the cursor does not move")


@pytest.mark.slow
def test_member_cannot_push_reveals_out_of_the_audit(client: TestClient) -> None:
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")
    assert claim(client, owner, made).status_code == 201  # the owner's first reveal
    serial = made.serial
    member = _member(client, owner, serial, "member@example.com")
    pin = f"/chargers/{serial}/pin?epoch=0"
    for _ in range(FLOOD):
        assert client.get(pin, headers={**member, **APP_VERSION}).status_code == 200

    audit = f"/chargers/{serial}/reveals"
    newest = client.get(audit, params={"limit": 1000}, headers=owner).json()
    assert {e["email"] for e in newest} == {"member@example.com"}  # the flood fills one page

    # Paging back reaches the first reveal, and reveals made meanwhile shift nothing.
    def reveal_meanwhile() -> None:
        assert client.get(pin, headers={**member, **APP_VERSION}).status_code == 200

    entries = _all_pages(client, audit, owner, limit=100, between=reveal_meanwhile)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # no repeats, in order
    assert len(entries) == FLOOD + 1
    assert (entries[-1]["email"], entries[-1]["epoch"]) == ("owner@example.com", 0)
    assert ids == [e["id"] for e in newest] + ids[1000:]  # the first page was the newest 1,000

    # The security events page the same way.
    for n in range(250):
        body = {"kind": "wrong_pin", "detail": f"epoch {n}"}
        client.post(f"/chargers/{serial}/events", json=body, headers=member)
    client.post(f"/chargers/{serial}/events", json={"kind": "locked"}, headers=owner)
    events = _all_pages(client, f"/chargers/{serial}/events", owner, limit=100)
    assert len(events) == 251 and events[0]["kind"] == "locked"
    assert events[-1]["detail"] == "epoch 0"


@pytest.mark.parametrize("path", ["reveals", "events"])
@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("before=0", "before"),
        ("before=9223372036854775808", "before"),
        ("before=x", "before"),
    ],
)
def test_paging_bounds_are_422_naming_the_parameter(
    client: TestClient, path: str, query: str, problem: str
) -> None:
    (made,) = provision(client, MANDATORY)
    owner = login(client, "owner@example.com")
    claim(client, owner, made)
    response = client.get(f"/chargers/{made.serial}/{path}?{query}", headers=owner)
    assert response.status_code == 422, response.text
    assert problem in response.json()["detail"]


async def test_the_phone_library_pages_the_audit_back_to_the_first_reveal(
    db_url: str, fleet_clock: FakeClock
) -> None:
    fleet = start_fleet(db_url, fleet_clock)
    try:
        [made] = fleet.provision("Pulsar Max", "6.11.2")
        owner = await fleet.account("owner@example.com")
        await owner.claim(made.sticker.encode())
        guest = await fleet.account("guest@example.com")
        await guest.accept(await owner.invite(made.serial, "guest@example.com"))
        for _ in range(130):
            await guest.pin_of_epoch(made.serial, 0)
        audit = await owner.audit(made.serial, page_size=50)
        assert len(audit) == 131
        assert audit[-1]["email"] == "owner@example.com"
        assert len({e["id"] for e in audit}) == 131
    finally:
        await fleet.close()


def test_the_cli_lists_the_whole_audit_and_every_event(
    db_url: str, fleet_clock: FakeClock, tmp_path: Path
) -> None:
    """`chargepin phone audit` and `phone events` over a real uvicorn: every page, oldest last."""
    fleet = start_fleet(db_url, fleet_clock)
    try:
        client = TestClient(fleet.app)
        (made,) = provision(client, MANDATORY)
        owner = login(client, "owner@example.com")
        assert claim(client, owner, made).status_code == 201
        member = _member(client, owner, made.serial, "member@example.com")
        for _ in range(150):
            client.get(f"/chargers/{made.serial}/pin?epoch=0", headers={**member, **APP_VERSION})
        for n in range(120):
            body = {"kind": "wrong_pin", "detail": f"epoch {n}"}
            client.post(f"/chargers/{made.serial}/events", json=body, headers=member)
        login_file = tmp_path / "login.json"
        with serve(fleet.app) as url:
            Login(url, owner["Authorization"].removeprefix("Bearer ")).save(login_file)
            code, out, err = invoke("phone", "audit", made.serial, "--login-file", str(login_file))
            assert code == 0, err
            lines = out.splitlines()
            assert len(lines) == 151
            assert "owner@example.com" in lines[-1] and "member@example.com" in lines[0]
            code, out, err = invoke("phone", "events", made.serial, "--login-file", str(login_file))
            assert code == 0, err
            lines = out.splitlines()
            assert len(lines) == 120 and lines[-1].endswith("epoch 0")
    finally:
        fleet.dispose()


def test_migration_0016_leaves_one_index_by_charger_and_goes_down_and_up(db_url: str) -> None:
    """ix_pin_reveals_charger_id (0002) was redundant with ix_pin_reveals_charger_id_id (0009),
    whose prefix it is: 0016 drops it, its downgrade makes it again, and the model (the
    schema's other description) declares only the one left."""
    one = {"ix_pin_reveals_charger_id_id": ["charger_id", "id"]}
    two = {**one, "ix_pin_reveals_charger_id": ["charger_id"]}
    model = PinReveal.__table__.indexes  # type: ignore[attr-defined]
    assert {i.name: [c.name for c in i.columns] for i in model} == one
    engine = make_engine(db_url)
    migrate(engine)
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def indexes() -> dict[str, list[str]]:
        return {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("pin_reveals")}

    try:
        assert indexes() == one
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0015")
        assert indexes() == two
        migrate(engine)
        assert indexes() == one
    finally:
        engine.dispose()
