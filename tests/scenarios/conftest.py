"""Scenario fixtures: the `chargepin` processes of a multi-process test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import Bench


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """The test's processes under its temporary directory, all killed when it ends."""
    processes = Bench(tmp_path)
    try:
        yield processes
    finally:
        processes.close()
