"""The argon2id profile of the fleet's passwords (`--password-hashing`, FleetSettings): what
each profile stores, that a stored hash outlives a change of profile, and that the service
commands take it as an option. The rest of the suite runs with "minimum"
(tests/helpers/fleet_settings.py); only the first test here pays for the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import argon2
import typer
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from chargepin.clock import FakeClock
from chargepin.fleet import cli
from chargepin.fleet.models import User
from chargepin.fleet.security import PASSWORD_HASHING_NAMES
from chargepin.fleet.settings import FleetSettings
from chargepin.lab.local_fleet import LocalFleet
from tests.helpers.fleet_accounts import PASSWORD
from tests.helpers.fleet_settings import fleet_settings, start_fleet

EMAIL = "hashing@example.com"
CREDENTIALS = {"email": EMAIL, "password": PASSWORD}


def stored_parameters(fleet: LocalFleet) -> argon2.Parameters:
    with fleet.state.sessions() as db:
        stored = db.scalar(select(User.password_hash).where(User.email == EMAIL))
    assert stored is not None
    return argon2.extract_parameters(stored)


def test_the_default_profile_stores_rfc_9106_hashes_and_a_new_profile_rehashes_at_login(
    tmp_path: Path,
) -> None:
    """The product's default: argon2id, 64 MiB, 3 passes, 4 lanes. A service restarted with
    "minimum" still logs that account in (argon2 verifies a hash with its own parameters);
    a wrong password changes nothing, the right one rehashes it with the new profile."""
    url, clock = f"sqlite:///{tmp_path / 'fleet.db'}", FakeClock()
    before = LocalFleet.start(url, clock)
    try:
        assert before.state.settings.password_hashing == FleetSettings().password_hashing
        with TestClient(before.app) as client:
            assert client.post("/register", json=CREDENTIALS).status_code == 201
        default = stored_parameters(before)
        assert (default.type, default.memory_cost, default.time_cost, default.parallelism) == (
            argon2.Type.ID, 65536, 3, 4,
        )  # fmt: skip
    finally:
        before.dispose()
    after = start_fleet(url, clock, before.state.vault)
    try:
        assert after.state.settings.password_hashing == "minimum"
        with TestClient(after.app) as client:
            wrong = client.post("/login", json={**CREDENTIALS, "password": "not " + PASSWORD})
            assert wrong.status_code == 401
            assert stored_parameters(after) == default
            assert client.post("/login", json=CREDENTIALS).status_code == 200
            assert stored_parameters(after) == after.state.passwords.parameters
            assert client.post("/login", json=CREDENTIALS).status_code == 200
    finally:
        after.dispose()


def test_the_minimum_profile_stores_owasp_s_least_argon2id(
    tmp_path: Path, fleet_clock: FakeClock
) -> None:
    """OWASP's minimum for argon2id: 19 MiB (19,456 KiB), 2 passes, 1 lane."""
    fleet = start_fleet(f"sqlite:///{tmp_path / 'fleet.db'}", fleet_clock)
    try:
        with TestClient(fleet.app) as client:
            assert client.post("/register", json=CREDENTIALS).status_code == 201
            assert client.post("/login", json=CREDENTIALS).status_code == 200
        stored = stored_parameters(fleet)
        assert (stored.type, stored.memory_cost, stored.time_cost, stored.parallelism) == (
            argon2.Type.ID, 19456, 2, 1,
        )  # fmt: skip
    finally:
        fleet.dispose()


def test_the_service_commands_take_the_profile_as_an_option() -> None:
    """`fleet serve` and `fleet gateway` share SERVICE_OPTIONS: the profile reaches their
    settings; a name that is no profile is refused before anything starts."""
    assert get_args(cli.PasswordHashingChoice) == PASSWORD_HASHING_NAMES
    made: list[FleetSettings] = []
    probe = typer.Typer()

    @probe.command()
    @cli.service_options
    def service(*, service: dict[str, Any]) -> None:
        made.append(cli._service_settings(None, None, service))

    runner = CliRunner()
    assert runner.invoke(probe, []).exit_code == 0
    assert runner.invoke(probe, ["--password-hashing", "minimum"]).exit_code == 0
    assert [settings.password_hashing for settings in made] == ["default", "minimum"]
    assert runner.invoke(probe, ["--password-hashing", "cheap"]).exit_code == 2
    assert fleet_settings().password_hashing == "minimum"
