"""`serve --workers N` hands its whole settings to every worker (its limits, pool sizes and
timeouts are options of `serve`, not only environment variables)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chargepin.fleet.operations import settings_from_json, settings_json
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.source_limits import SourceLimitSettings


def test_every_setting_survives_the_trip_to_a_worker() -> None:
    limits = SourceLimitSettings(
        rate=7, window=5.0, in_flight=3, sockets=9, header="X-Forwarded-For", exempt=("10.0.0.0/8",)
    )
    settings = dataclasses.replace(
        FleetSettings(db_url="postgresql+psycopg://fleet:pw@127.0.0.1:5432/fleet"),
        vault_key_file=Path("/etc/chargepin/vault.json"),
        db_pool_size=3,
        db_max_overflow=1,
        db_pool_timeout=2.5,
        db_statement_timeout=4.0,
        outbox_max_open=4,
        min_app_version="2.1.0",
        source_limits=limits,
        password_hashing="minimum",
    )
    assert settings != FleetSettings()
    assert settings_from_json(settings_json(settings)) == settings
    assert settings_from_json(settings_json(FleetSettings())) == FleetSettings()
