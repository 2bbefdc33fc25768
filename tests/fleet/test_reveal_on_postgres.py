"""The PIN reveal on PostgreSQL runs on the event loop (`reveals.PostgresReveals`): every check
still holds there, no PIN leaves without its committed audit row, a flood stays within its
connections, and PostgreSQL going away mid-flood is a clear 503, never a hang, then recovers.

Real PostgreSQL, real uvicorn over loopback; PostgreSQL "stops" behind a TCP relay
(tests/helpers/relay.py) that cuts every connection and refuses new ones, so the shared test
server is never stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from chargepin.clock import FakeClock
from chargepin.fleet.app import create_app
from chargepin.fleet.deps import bearer_digest
from chargepin.fleet.errors import Conflict
from chargepin.fleet.models import Charger, Membership, PinReveal, User
from chargepin.fleet.reveals import PostgresReveals
from chargepin.fleet.vault import Vault
from chargepin.lab.live_server import serve
from chargepin.lab.ports import free_port
from tests.helpers.fleet_accounts import invited, login
from tests.helpers.fleet_factory import MANDATORY, claim, provision
from tests.helpers.fleet_settings import fleet_settings
from tests.helpers.postgres import needs_postgres, new_database
from tests.helpers.relay import Relay

pytestmark = needs_postgres

POOL = 3
"""The app's db_pool_size here: the loop's reveals hold at most this many connections too."""
FLOOD = 200
NEVER_LONGER = 20.0
"""What the test accepts as 'nothing hangs' on a loaded machine (the waits configured: 1-5 s)."""


@pytest.fixture
def database() -> Iterator[str]:
    with new_database() as url:
        yield url


def fleet_app(url: str, clock: FakeClock, **settings: Any) -> FastAPI:
    settings = {"db_pool_timeout": 1.0, **settings}
    return create_app(
        fleet_settings(db_url=url, db_pool_size=POOL, db_max_overflow=2, **settings),
        vault=Vault.generate(),
        clock=clock,
    )


def audit_rows(app: FastAPI) -> int:
    with app.state.fleet.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(PinReveal)) or 0)


def loop_reveals(app: FastAPI) -> PostgresReveals:
    postgres = app.state.loop_reveals.postgres
    assert isinstance(postgres, PostgresReveals)
    return postgres


async def test_the_loop_s_reveal_answers_only_a_live_member_and_audits_each_answer(
    database: str,
) -> None:
    """Called directly, the loop's path answers a live member (with the audit row) and hands
    everything else to the hop (None): stranger, revoked member, expired login, unknown token;
    an epoch not attested is refused by the same rule as everywhere (and not audited)."""
    clock = FakeClock()
    app = fleet_app(database, clock)
    try:
        with TestClient(app) as client:
            (made,) = provision(client, MANDATORY)
            owner = login(client, "owner@example.com")
            assert claim(client, owner, made).status_code == 201
            member = invited(client, owner, made.serial, "member@example.com")
            stranger = login(client, "stranger@example.com")
        state = app.state.fleet
        reveals = loop_reveals(app)

        async def reveal(headers: dict[str, str], epoch: int = 0) -> dict[str, object] | None:
            digest = bearer_digest(headers["Authorization"])
            assert digest is not None
            return await reveals.reveal(state, digest, made.serial, epoch, "2.3.0")

        audited = audit_rows(app)
        answer = await reveal(member)
        assert answer is not None and answer["serial"] == made.serial and answer["epoch"] == 0
        assert audit_rows(app) == audited + 1
        assert await reveal(stranger) is None
        assert await reveal({"Authorization": "Bearer not-a-token"}) is None
        with pytest.raises(Conflict):
            await reveal(owner, epoch=1)
        assert audit_rows(app) == audited + 1

        with state.sessions() as db, db.begin():
            member_id = db.scalar(select(User.id).where(User.email == "member@example.com"))
            db.execute(
                update(Membership)
                .where(Membership.user_id == member_id)
                .values(revoked_at=func.now())
            )
        assert await reveal(member) is None
        assert await reveal(owner) is not None
        clock.advance(state.settings.token_lifetime + 1)
        assert await reveal(owner) is None
        assert audit_rows(app) == audited + 2
        assert reveals.opened == 1 and len(reveals.idle) == 1  # one reveal at a time: one
        assert reveals.lost == 0 and reveals.busy == 0
    finally:
        app.state.fleet.engine.dispose()
    assert reveals.opened == 0  # closed with the app's engine


def test_an_audit_row_that_cannot_be_written_gives_no_pin(database: str) -> None:
    """Another session holds pin_reveals locked past the lock timeout: the loop's INSERT fails,
    the answer is 503 without a PIN (not the hop, which would wait as long again), and no row
    was written; once the lock is gone the reveal is answered and audited."""
    app = fleet_app(database, FakeClock(), db_lock_timeout=0.5)
    other = sqlalchemy.create_engine(database)
    try:
        with TestClient(app) as client:
            (made,) = provision(client, MANDATORY)
            owner = login(client, "owner@example.com")
            assert claim(client, owner, made).status_code == 201
            url = f"/chargers/{made.serial}/pin?epoch=0"
            audited = audit_rows(app)
            with other.connect() as session:
                session.exec_driver_sql("LOCK TABLE pin_reveals IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                refused = client.get(url, headers=owner)
                waited = time.monotonic() - started
                session.rollback()
            assert refused.status_code == 503, refused.text
            assert "pin" not in refused.json() and refused.json()["error"] == "busy"
            assert waited < 0.5 * 2 + NEVER_LONGER / 4
            assert audit_rows(app) == audited
            assert loop_reveals(app).lost == 0  # refused by PostgreSQL, not a lost connection
            answer = client.get(url, headers=owner)
            assert answer.status_code == 200, answer.text
            assert audit_rows(app) == audited + 1
    finally:
        other.dispose()
        app.state.fleet.engine.dispose()


def backends(database: str) -> int:
    """The connections open to `database`, as PostgreSQL counts them."""
    admin = sqlalchemy.create_engine(database.rsplit("/", 1)[0] + "/postgres")
    try:
        with admin.connect() as connection:
            return int(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %(name)s",
                    {"name": database.rsplit("/", 1)[1]},
                ).scalar_one()
            )
    finally:
        admin.dispose()


async def flood(
    live: str, path: str, headers: dict[str, str], count: int = FLOOD
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=live, limits=limits, timeout=NEVER_LONGER * 2) as http:
        return list(await asyncio.gather(*(http.get(path, headers=headers) for _ in range(count))))


@pytest.mark.slow
async def test_a_flood_then_postgresql_gone_mid_flood_is_503_never_a_hang_then_recovers(
    database: str,
) -> None:
    """200 reveals at once: all answered and audited, within the connections configured. Then
    PostgreSQL goes away during a second flood: every request ends within the bound, each a
    200 with its audit row or a 503, never a 500 or a PIN without a row; and once PostgreSQL is
    back the reveals are answered on the loop again."""
    port = int(sqlalchemy.make_url(database).port or 5432)
    relay = Relay(port)
    relayed = sqlalchemy.make_url(database).set(port=relay.start())
    # Waits for a connection long enough for a flood on a loaded machine, still bounded.
    app = fleet_app(relayed.render_as_string(hide_password=False), FakeClock(), db_pool_timeout=5.0)
    try:
        with TestClient(app) as client:
            (made,) = provision(client, MANDATORY)
            owner = login(client, "owner@example.com")
            assert claim(client, owner, made).status_code == 201
        path = f"/chargers/{made.serial}/pin?epoch=0"
        reveals = loop_reveals(app)
        with serve(app) as live:
            audited = audit_rows(app)
            answers = await flood(live, path, owner)
            assert [r.status_code for r in answers] == [200] * FLOOD
            assert audit_rows(app) == audited + FLOOD
            assert reveals.opened <= POOL and reveals.lost == 0
            # The engine's pool (3 + 2 overflow) and the loop's (3): never more.
            assert backends(database) <= POOL + 2 + POOL

            audited = audit_rows(app)
            started = time.monotonic()
            second = asyncio.ensure_future(flood(live, path, owner))
            direct = sqlalchemy.create_engine(database)  # not through the relay
            try:
                while not second.done():  # mid-flood: some answered, not all
                    with direct.connect() as connection:
                        count = connection.scalar(select(func.count()).select_from(PinReveal))
                    if int(count or 0) > audited + FLOOD // 10:
                        break
                    await asyncio.sleep(0.002)
            finally:
                direct.dispose()
            assert not second.done()
            relay.upstream = free_port()  # nothing listens there: refused, as a stopped server
            relay.hang_up()
            answers = await second
            assert time.monotonic() - started < NEVER_LONGER
            statuses = [r.status_code for r in answers]
            assert set(statuses) <= {200, 503}, statuses
            assert 503 in statuses
            for refused in (r for r in answers if r.status_code == 503):
                assert "pin" not in refused.json() and refused.headers["Retry-After"]
            relay.upstream = port
            # No PIN without its row (a commit whose answer was lost may leave one more row).
            assert audit_rows(app) >= audited + statuses.count(200)

            lost = reveals.lost
            assert lost > 0
            async with httpx.AsyncClient(base_url=live, timeout=NEVER_LONGER) as http:
                again = await http.get(path, headers=owner)
                assert again.status_code == 200, again.text
                again = await http.get(path, headers=owner)
                assert again.status_code == 200, again.text
            assert reveals.lost == lost and reveals.opened >= 1  # the loop's path again
    finally:
        app.state.fleet.engine.dispose()
        relay.close()


def test_a_revoked_member_flooding_gets_403_and_no_row(database: str) -> None:
    """The revoked member's reveals all take the hop, whose ordinary path says why; none is
    answered with a PIN or audited, however many arrive at once."""
    app = fleet_app(database, FakeClock(), db_pool_timeout=NEVER_LONGER)
    try:
        with TestClient(app) as client:
            (made,) = provision(client, MANDATORY)
            owner = login(client, "owner@example.com")
            assert claim(client, owner, made).status_code == 201
            member = invited(client, owner, made.serial, "member@example.com")
            with app.state.fleet.sessions() as db, db.begin():
                charger_id = db.scalar(select(Charger.id).where(Charger.serial == made.serial))
                db.execute(
                    update(Membership)
                    .where(Membership.charger_id == charger_id, Membership.role == "user")
                    .values(revoked_at=func.now())
                )
            audited = audit_rows(app)
        with serve(app) as live:
            path = f"/chargers/{made.serial}/pin?epoch=0"
            answers = asyncio.run(flood(live, path, member, FLOOD // 4))
        assert {r.status_code for r in answers} == {403}
        assert {r.json()["error"] for r in answers} == {"revoked"}
        assert audit_rows(app) == audited
    finally:
        app.state.fleet.engine.dispose()
