"""Fleet fixtures: the real ASGI app on a real database (`db_url`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from tests.helpers.fleet_answers import record_refusals, undeclared
from tests.helpers.fleet_settings import start_fleet


@pytest.fixture
def fleet_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def fleet_documents() -> dict[str, dict[str, Any]]:
    """The OpenAPI document of `client`'s app, made once per worker: LocalFleet's routes are
    the same on either database, and making it takes 0.2-0.6 s, as long as a short test."""
    return {}


@pytest.fixture
def client(
    db_url: str, fleet_clock: FakeClock, fleet_documents: dict[str, dict[str, Any]]
) -> Iterator[TestClient]:
    """The app's client. Every refusal a test meets through it must be one /openapi.json
    declares for the route (issue 12: several routes answered an undeclared 409)."""
    fleet = start_fleet(db_url, fleet_clock)
    try:
        with TestClient(fleet.app) as test_client:
            seen = record_refusals(test_client)
            yield test_client
        if seen:
            if "local" not in fleet_documents:
                fleet_documents["local"] = fleet.app.openapi()
            missing = undeclared(fleet_documents["local"], seen)
            assert not missing, f"answered, not declared in /openapi.json: {sorted(missing)}"
    finally:
        fleet.dispose()
