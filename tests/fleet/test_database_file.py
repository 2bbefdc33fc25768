"""The fleet's SQLite file at rest: readable by the service's user only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_settings import start_fleet


def test_a_new_sqlite_database_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    """Issue 9: with the usual umask (022) the file holding PIN ciphertexts, claim-code and
    token digests was created 0644, readable by every local user."""
    path = tmp_path / "data" / "fleet.db"
    previous = os.umask(0o022)
    try:
        fleet = start_fleet(f"sqlite:///{path}", FakeClock())
        with TestClient(fleet.app) as client:
            login(client, "owner@example.com")  # a write: the -wal file exists now
            for name in ("fleet.db", "fleet.db-wal", "fleet.db-shm"):
                assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
        fleet.dispose()
    finally:
        os.umask(previous)


def test_an_existing_database_keeps_the_mode_its_operator_chose(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    start_fleet(f"sqlite:///{path}", FakeClock()).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
