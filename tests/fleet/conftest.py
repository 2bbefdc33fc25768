"""Fleet fixtures: the real ASGI app on a real database (SQLite file; PostgreSQL when asked)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.lab.local_fleet import LocalFleet


def database_urls() -> list[str]:
    """SQLite always; PostgreSQL too when CHARGEPIN_TEST_POSTGRES names a server (CI sets it)."""
    urls = ["sqlite"]
    if os.environ.get("CHARGEPIN_TEST_POSTGRES"):
        urls.append("postgresql")
    return urls


@pytest.fixture(params=database_urls())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    import uuid

    import sqlalchemy

    base = os.environ["CHARGEPIN_TEST_POSTGRES"]  # postgresql+psycopg://user@127.0.0.1:5432
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def fleet_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(db_url: str, fleet_clock: FakeClock) -> Iterator[TestClient]:
    fleet = LocalFleet.start(db_url, fleet_clock)
    with TestClient(fleet.app) as test_client:
        yield test_client
    fleet.dispose()
