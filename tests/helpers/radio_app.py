"""The radio app's world for the tests: a virtual radio with a real charger daemon on an event
loop of its own (a thread), a real fleet and the radio app each behind a uvicorn on 127.0.0.1.

The daemon and the app's phone meet on the air through `chargepin radio`'s controllers
(tcp-client on loopback), as two processes would; the app opens its phone in its own server's
event loop. Nothing sleeps: every start is awaited, every stop joined with a bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from chargepin.app.radio import Radio, RadioOptions
from chargepin.app.server import create_app
from chargepin.clock import SystemClock
from chargepin.fleet.app import create_app as create_fleet
from chargepin.fleet.vault import Vault
from chargepin.lab.live_server import serve
from chargepin.lab.local_fleet import LocalFleet
from chargepin.lab.radio_air import Air
from chargepin.lab.testbed import ChargerSpec
from chargepin.phone.fleet_client import APP_VERSION
from chargepin.phone.flows import PhoneOptions
from tests.helpers.fleet_accounts import PASSWORD
from tests.helpers.fleet_settings import fleet_settings

SCAN_SECONDS = 0.5


@dataclass
class World:
    """What a radio-app test talks to."""

    app_url: str
    fleet_url: str
    fleet: LocalFleet
    air: Air
    serial: str
    secret: bytes
    sticker: str

    def owner(self, email: str = "owner@example.com", app_version: str = APP_VERSION) -> str:
        """A new account that commissioned the charger through the fleet's JSON API (from an
        app of `app_version`); its e-mail (the password is PASSWORD)."""
        version = {"X-App-Version": app_version}
        with httpx.Client(base_url=self.fleet_url, headers=version) as api:
            body = {"email": email, "password": PASSWORD}
            assert api.post("/register", json=body).status_code in (200, 201)
            token = api.post("/login", json=body).json()["token"]
            claimed = api.post(
                "/chargers/claim",
                json={"payload": self.sticker},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert claimed.status_code == 201, claimed.text
        return email

    def guest(self, owner: str, email: str) -> str:
        """A new account the owner invited to the charger and that accepted (the JSON API)."""
        with httpx.Client(base_url=self.fleet_url) as api:

            def token(who: str) -> str:
                body = {"email": who, "password": PASSWORD}
                return str(api.post("/login", json=body).json()["token"])

            owners = {"Authorization": f"Bearer {token(owner)}"}
            invited = api.post(
                f"/chargers/{self.serial}/invitations", json={"email": email}, headers=owners
            )
            assert invited.status_code in (200, 201), invited.text
            assert api.post("/register", json={"email": email, "password": PASSWORD}).is_success
            accepted = api.post(
                "/invitations/accept",
                json={"code": invited.json()["code"]},
                headers={"Authorization": f"Bearer {token(email)}"},
            )
            assert accepted.is_success, accepted.text
        return email

    def charger_pin(self) -> str:
        return self.air.on_daemon(lambda daemon: daemon.store.current_pin().digits)


@contextmanager
def radio_world(
    directory: Path,
    *,
    spec: dict[str, Any] | None = None,
    min_app_version: str = "2.0.0",
    model: str = "Pulsar Max",
    firmware: str = "6.11.2",
) -> Iterator[World]:
    """A fleet (SQLite file), a charger it provisioned running on the air, the radio app."""
    settings = fleet_settings(
        db_url=f"sqlite:///{directory / 'fleet.db'}", min_app_version=min_app_version
    )
    fleet = LocalFleet(create_fleet(settings, vault=Vault.generate(), clock=SystemClock()))
    try:
        (made,) = fleet.provision(model, firmware)
        charger = ChargerSpec.from_bundle(made.bundle)
        if spec:
            charger = replace(charger, **spec)
        air = Air(directory, charger)
        try:
            with serve(fleet.app) as fleet_url:
                options = RadioOptions(
                    PhoneOptions(transport=air.transport(1), bonds=directory / "app-bonds.db"),
                    scan_seconds=SCAN_SECONDS,
                )
                app = create_app(fleet_url, Radio(options))
                with serve(app, lifespan=True) as app_url:
                    yield World(
                        app_url,
                        fleet_url,
                        fleet,
                        air,
                        made.serial,
                        made.secret,
                        made.sticker.encode(),
                    )
        finally:
            air.close()
    finally:
        fleet.dispose()
