"""Shared fixtures: a virtual radio testbed with a fake clock (the only fake in the suite), and
the fleet's database (a SQLite file; PostgreSQL too when CHARGEPIN_TEST_POSTGRES names a server)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from playwright.sync_api import Browser, sync_playwright

from chargepin.clock import FakeClock
from chargepin.lab.testbed import Testbed
from tests.helpers.browser import chromium_path
from tests.helpers.postgres import new_database

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
    with new_database() as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium (Debian's, tests/helpers/browser.py) for a module's tests; each
    test opens its own context."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield chromium
        chromium.close()
