"""Scenario fixtures: the `chargepin` processes of a multi-process test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chargepin.clock import FakeClock
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_settings import start_fleet
from tests.helpers.processes import Bench


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """The test's processes under its temporary directory, all killed when it ends."""
    processes = Bench(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
async def fleet(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalFleet]:
    """The real fleet app on a SQLite file in this process, on the test's clock."""
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", clock)
    yield fleet
    await fleet.close()
