"""Fleet fixtures: the real ASGI app on a real database (`db_url`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.lab.local_fleet import LocalFleet


@pytest.fixture
def fleet_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(db_url: str, fleet_clock: FakeClock) -> Iterator[TestClient]:
    fleet = LocalFleet.start(db_url, fleet_clock)
    with TestClient(fleet.app) as test_client:
        yield test_client
    fleet.dispose()
