"""Interop fixtures: the real fleet app on a SQLite file in this process, on the test's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chargepin.clock import FakeClock
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_settings import start_fleet


@pytest.fixture
async def fleet(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalFleet]:
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", clock)
    yield fleet
    await fleet.close()
