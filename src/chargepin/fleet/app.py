"""The fleet service as a FastAPI app: `create_app(settings)` wires database, vault and routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from chargepin import __version__
from chargepin.clock import Clock, SystemClock
from chargepin.core.errors import ChargepinError
from chargepin.fleet.api import accounts, chargers
from chargepin.fleet.api import factory as factory_api
from chargepin.fleet.api import members as members_api
from chargepin.fleet.api import tickets as tickets_api
from chargepin.fleet.db import make_engine, migrate, session_factory
from chargepin.fleet.errors import FleetError
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.vault import Vault, load_vault

logger = logging.getLogger(__name__)


@dataclass
class FleetState:
    """What every request handler may use; one per app, no globals."""

    settings: FleetSettings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    clock: Clock


def create_app(
    settings: FleetSettings | None = None,
    *,
    vault: Vault | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """The ASGI app; migrations are applied before it serves anything."""
    settings = settings or FleetSettings.from_env()
    engine = engine or make_engine(settings.db_url)
    migrate(engine)
    if vault is None:
        vault, created = load_vault(settings.vault_key_file)
        if created:
            logger.warning(created)
    app = FastAPI(
        title="chargepin fleet service",
        version=__version__,
        description="Accounts, chargers, commissioning, the PIN vault, invitations and tickets.",
    )
    app.state.fleet = FleetState(
        settings, engine, session_factory(engine), vault, clock or SystemClock()
    )

    @app.exception_handler(FleetError)
    async def fleet_error(_request: Request, error: FleetError) -> JSONResponse:
        return JSONResponse(
            status_code=error.status,
            content={"error": error.code, "detail": str(error)},
            headers=error.headers,
        )

    @app.exception_handler(ChargepinError)
    async def rule_refused(_request: Request, error: ChargepinError) -> JSONResponse:
        # A core rule refused the input (a weak PIN, a bad version, ...): the caller's error.
        return JSONResponse(status_code=422, content={"error": "invalid", "detail": str(error)})

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in error.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={"error": "invalid_request", "detail": "; ".join(problems)},
        )

    app.include_router(accounts.router)
    app.include_router(chargers.router)
    app.include_router(members_api.router)
    app.include_router(tickets_api.router)
    app.include_router(factory_api.router)
    return app
