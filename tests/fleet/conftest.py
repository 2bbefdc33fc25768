"""Fleet fixtures: the real ASGI app on a real database (`db_url`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_answers import record_refusals, undeclared


@pytest.fixture
def fleet_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(db_url: str, fleet_clock: FakeClock) -> Iterator[TestClient]:
    """The app's client. Every refusal a test meets through it must be one /openapi.json
    declares for the route (issue 12: several routes answered an undeclared 409)."""
    fleet = LocalFleet.start(db_url, fleet_clock)
    try:
        with TestClient(fleet.app) as test_client:
            seen = record_refusals(test_client)
            yield test_client
        missing = undeclared(fleet.app, seen)
        assert not missing, f"answered, not declared in /openapi.json: {sorted(missing)}"
    finally:
        fleet.dispose()
