"""The factory's bulk path (COPY on PostgreSQL, bulk INSERT on SQLite) makes the rows the ORM
would: every column, secrets that open, claim codes that verify, a sticker that commissions."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import factory, pins
from chargepin.fleet.claims import code_digest, code_matches
from chargepin.fleet.db import make_engine
from chargepin.fleet.errors import Conflict
from chargepin.fleet.models import Charger
from chargepin.fleet.pins import secret_context
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_factory import MANDATORY, claim, provision

PRODUCED = dt.date(2025, 9, 1)
COLUMNS = [column.key for column in inspect(Charger).columns if column.key != "id"]


def _columns(row: Charger) -> dict[str, object]:
    return {key: getattr(row, key) for key in COLUMNS}


def test_bulk_rows_equal_the_rows_the_orm_makes(client: TestClient) -> None:
    made = provision(client, count=7)
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    vault = fleet.vault
    with fleet.sessions() as db, db.begin():
        bulk = {row.serial: row for row in db.scalars(select(Charger).order_by(Charger.id))}
        assert list(bulk) == [item.serial for item in made]
        first = bulk[made[0].serial]
        for item in made:
            row = bulk[item.serial]
            assert pins.charger_secret(vault, row) == item.secret
            assert code_matches(vault, row.claim_code_hash, item.serial, item.claim_code)
            # The same charger made one row at a time through the ORM, its sealed values
            # (random nonces) and its moment taken over: every other column must agree.
            orm = Charger(
                serial="ORM" + item.serial,
                model=item.model,
                firmware=item.firmware,
                produced=item.produced,
                secret_ct=vault.seal(item.secret, secret_context("ORM" + item.serial)),
                claim_code_hash=code_digest(vault, "ORM" + item.serial, item.claim_code),
                pin_enabled=True,
                created_at=first.created_at,
            )
            db.add(orm)
            db.flush()
            db.expire_all()
            expected = _columns(orm)
            expected.update(
                serial=item.serial,
                secret_ct=row.secret_ct,
                claim_code_hash=row.claim_code_hash,
            )
            assert _columns(row) == expected
            assert isinstance(row.firmware, FirmwareVersion)
            db.delete(orm)
            db.flush()


def test_a_bulk_made_sticker_commissions_through_the_api(client: TestClient) -> None:
    made = provision(client, count=3)
    owner = login(client, "owner@example.com")
    answer = claim(client, owner, made[1])
    assert answer.status_code == 201, answer.text
    assert answer.json()["serial"] == made[1].serial


def test_model_names_with_copy_control_characters_arrive_intact(client: TestClient) -> None:
    """COPY's text format gives tab, newline and backslash meanings: none may leak through."""
    name = 'Pulsar\\N Max\t"x",\n\\.'
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    with fleet.sessions() as db, db.begin():
        made = factory.provision(
            db,
            fleet.vault,
            count=2,
            model=name,
            firmware=FirmwareVersion.parse(MANDATORY.firmware),
            produced=dt.date(2025, 9, 1),
        )
    with fleet.sessions() as db:
        rows = db.scalars(select(Charger).order_by(Charger.id)).all()
    assert [(row.serial, row.model) for row in rows] == [(m.serial, name) for m in made]


def test_a_second_run_of_a_prefix_in_progress_is_refused_with_the_reason(
    client: TestClient, db_url: str
) -> None:
    """PostgreSQL refuses a second run of the prefix at once (other prefixes go on); SQLite's
    second run waits for the one writer, and is refused past its lock timeout. Afterwards the
    serials continue where the first run's commit left them."""
    fleet = client.app.state.fleet  # type: ignore[attr-defined]
    firmware = FirmwareVersion.parse(MANDATORY.firmware)
    postgresql = fleet.engine.dialect.name == "postgresql"
    impatient = make_engine(db_url, lock_timeout=0.2)

    def run(db: Session, prefix: str = "CP") -> list[factory.Provisioned]:
        return factory.provision(
            db,
            fleet.vault,
            count=2,
            model="Pulsar Max",
            firmware=firmware,
            produced=PRODUCED,
            serial_prefix=prefix,
        )

    try:
        with fleet.sessions() as first, first.begin():
            run(first)
            with (
                Session(impatient) as second,
                pytest.raises(Conflict, match="in progress" if postgresql else "lock timeout"),
                second.begin(),
            ):
                run(second)
            if postgresql:
                with fleet.sessions() as other, other.begin():
                    assert [m.serial for m in run(other, "PX")] == ["PX00000001", "PX00000002"]
    finally:
        impatient.dispose()
    with fleet.sessions() as later, later.begin():
        assert [m.serial for m in run(later)] == ["CP00000003", "CP00000004"]
