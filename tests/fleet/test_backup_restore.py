"""The restore drill of docs/DEPLOY.md ("Backups"): pg_dump of a fleet's PostgreSQL database,
restored into a new database, reveals the same PINs with the vault key kept apart from it, and
the service refuses to start on it with any other key, saying which key it needs."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from chargepin.clock import FakeClock
from chargepin.fleet.app import create_app
from chargepin.fleet.vault import key_id, load_vault
from chargepin.lab.bench_fleet_scale import pg_bindir
from chargepin.lab.ports import free_ports
from chargepin.lab.processes import CHARGEPIN
from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_factory import MANDATORY, claim, provision
from tests.helpers.fleet_settings import SERVE_HASHING, fleet_settings, start_fleet


def pg_tool(name: str) -> str:
    """pg_dump or pg_restore of the newest installed server (.ci/postgres.sh's)."""
    return str(pg_bindir() / name)


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_a_restored_backup_reveals_the_pins_with_its_key_and_refuses_another(
    db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("pg_dump is PostgreSQL's; a SQLite fleet is backed up with sqlite3 .backup")
    key_file = tmp_path / "vault-key.json"
    vault, _ = load_vault(key_file)
    fleet = start_fleet(db_url, FakeClock(), vault=vault)
    with TestClient(fleet.app) as client:
        owner = login(client, "owner@example.com")
        (made,) = provision(client, MANDATORY)
        claimed = claim(client, owner, made)
        assert claimed.status_code == 201, claimed.text
        pin = claimed.json()["pin"]
    fleet.dispose()

    dump = tmp_path / "fleet.dump"
    run(pg_tool("pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={libpq(db_url)}")
    base = os.environ["CHARGEPIN_TEST_POSTGRES"]
    restored = f"{base}/t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    name = restored.rsplit("/", 1)[1]
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        run(pg_tool("pg_restore"), "--no-owner", f"--dbname={libpq(restored)}", str(dump))

        settings = fleet_settings(db_url=restored, vault_key_file=key_file)
        app = create_app(settings, clock=FakeClock())
        with TestClient(app) as client:
            headers = login(client, "owner@example.com")
            revealed = client.get(f"/chargers/{made.serial}/pin?epoch=0", headers=headers)
            assert revealed.status_code == 200, revealed.text
            assert revealed.json()["pin"] == pin
        app.state.fleet.engine.dispose()

        other = tmp_path / "another-host-key.json"
        wrong = load_vault(other)[0]
        (port,) = free_ports(1)
        serve = [
            *CHARGEPIN,
            "fleet",
            "serve",
            "--db",
            restored,
            "--port",
            str(port),
            *SERVE_HASHING,
        ]
        for given, made_now in ((other, False), (tmp_path / "none-restored.json", True)):
            refused = subprocess.run(
                [*serve, "--vault-key-file", str(given)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            assert refused.returncode == 2, refused.stderr
            assert f"sealed with vault key {key_id(vault.current).hex()}" in refused.stderr
            assert "the key file that belongs to this database" in refused.stderr
            assert given.exists() is not made_now  # a key file made for nothing is removed
        assert load_vault(other)[0].current == wrong.current
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
