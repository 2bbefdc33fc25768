"""Shared fixtures: a virtual radio testbed with a fake clock (the only fake in the suite)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from chargepin.clock import FakeClock
from chargepin.lab.testbed import Testbed

# These machines are shared and noisy: time is never a property under test here (benchmarks
# measure it), so no per-example deadline and no "generation too slow" health check.
settings.register_profile("chargepin", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("chargepin")

# Expected pairing failures make Bumble log warnings; the tests assert on outcomes instead.
logging.getLogger("bumble").setLevel(logging.ERROR)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def bed(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Testbed]:
    testbed = Testbed(tmp_path, clock)
    try:
        yield testbed
    finally:
        await testbed.close()
