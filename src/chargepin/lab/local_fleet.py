"""The fleet service in this process, for the demo and the tests: the real app on a real
database, spoken to over HTTP by the app's own client through an in-process transport.

Everything is the real thing (the FastAPI app and its database, the factory's provisioning,
`FleetClient`); only the transport is in memory (`httpx.ASGITransport`), and the clock is the
caller's (the demo and the end-to-end tests give the fleet and the chargers one FakeClock, so
that tickets and lockouts agree on time).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from chargepin.clock import Clock
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.app import FleetState, create_app
from chargepin.fleet.db import transaction
from chargepin.fleet.factory import Provisioned, provision
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.vault import Vault
from chargepin.phone.fleet_client import FleetClient

if TYPE_CHECKING:
    from chargepin.fleet.security import PasswordHashing

PRODUCED = dt.date(2025, 9, 1)
"""The production date the factory stamps unless told otherwise."""
PASSWORD = "correct horse battery"
"""Every account's password (the accounts are made up on the spot)."""
BASE_URL = "http://fleet.local"
"""Where the app's client believes the fleet is (the transport never leaves the process)."""


class LocalFleet:
    """One fleet app in this process: the factory's provisioning and accounts over HTTP."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.clients: list[FleetClient] = []

    @classmethod
    def start(
        cls,
        db_url: str,
        clock: Clock,
        vault: Vault | None = None,
        *,
        password_hashing: PasswordHashing = "default",
    ) -> LocalFleet:
        """The real app on `db_url` (SQLite file or PostgreSQL), with a fresh vault by default
        and the service's default password hashing unless told otherwise (the tests use
        "minimum": tests/helpers/fleet_settings.py)."""
        settings = FleetSettings(db_url=db_url, password_hashing=password_hashing)
        app = create_app(settings, vault=vault or Vault.generate(), clock=clock)
        return cls(app)

    @property
    def state(self) -> FleetState:
        state: FleetState = self.app.state.fleet
        return state

    def provision(
        self,
        model: str,
        firmware: str,
        produced: dt.date = PRODUCED,
        count: int = 1,
        prefix: str = "CP",
    ) -> list[Provisioned]:
        """The factory run (`chargepin fleet provision`) on this fleet's database and vault."""
        with transaction(self.state.sessions) as db:
            return provision(
                db,
                self.state.vault,
                count=count,
                model=model,
                firmware=FirmwareVersion.parse(firmware),
                produced=produced,
                serial_prefix=prefix,
            )

    async def account(self, email: str, password: str = PASSWORD) -> FleetClient:
        """A new account, registered and logged in from the app (closed with the fleet)."""
        client = FleetClient(BASE_URL, transport=httpx.ASGITransport(app=self.app))
        self.clients.append(client)
        await client.register(email, password)
        await client.login(email, password)
        return client

    def dispose(self) -> None:
        """Close the database connections (the app is not used after this)."""
        self.state.engine.dispose()

    async def close(self) -> None:
        """Close every account's client, then the database connections."""
        for client in self.clients:
            await client.close()
        self.clients.clear()
        self.dispose()
