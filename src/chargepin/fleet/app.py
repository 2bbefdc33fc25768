"""The fleet service as a FastAPI app: `create_app(settings)` wires database, vault and routes."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from chargepin import __version__
from chargepin.clock import Clock, SystemClock
from chargepin.core.errors import ChargepinError
from chargepin.fleet.api import accounts, chargers
from chargepin.fleet.api import csms as csms_api
from chargepin.fleet.api import factory as factory_api
from chargepin.fleet.api import health as health_api
from chargepin.fleet.api import members as members_api
from chargepin.fleet.api import presence as presence_api
from chargepin.fleet.api import tickets as tickets_api
from chargepin.fleet.api.refusals import declare_refusals
from chargepin.fleet.body_limit import MAX_BODY_BYTES, BodyLimit
from chargepin.fleet.csms import route as csms_route
from chargepin.fleet.db import make_engine, migrate, refusal, session_factory
from chargepin.fleet.errors import FleetError
from chargepin.fleet.security import Passwords
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.source_limits import SourceLimits
from chargepin.fleet.vault import Vault, load_vault
from chargepin.fleet.web import LARGER_BODIES, plain_page
from chargepin.fleet.web import install as install_web

logger = logging.getLogger(__name__)


@dataclass
class FleetState:
    """What every request handler may use; one per app, no globals."""

    settings: FleetSettings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    clock: Clock
    passwords: Passwords


def create_app(
    settings: FleetSettings | None = None,
    *,
    vault: Vault | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    api: bool = True,
    ocpp: bool = True,
) -> FastAPI:
    """The ASGI app; migrations are applied before it serves anything. `api`: the JSON API and
    the pages; `ocpp`: the CSMS's WebSocket route (`fleet gateway` serves only that one, `fleet
    serve --no-ocpp` all but that one)."""
    if not (api or ocpp):
        raise ValueError("an app serves the API, OCPP or both")
    settings = settings or FleetSettings.from_env()
    engine = engine or make_engine(
        settings.db_url,
        settings.db_lock_timeout,
        settings.db_statement_timeout,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )
    migrate(engine)
    if vault is None:
        vault, created = load_vault(settings.vault_key_file)
        if created:
            logger.warning(created)
    app = FastAPI(
        title="chargepin fleet service",
        version=__version__,
        description="Accounts, chargers, commissioning, the PIN vault, invitations and tickets.",
        # A gateway (OCPP only) has no API to describe.
        docs_url="/docs" if api else None,
        redoc_url="/redoc" if api else None,
        openapi_url="/openapi.json" if api else None,
    )
    app.state.fleet = FleetState(
        settings,
        engine,
        session_factory(engine),
        vault,
        clock or SystemClock(),
        Passwords(settings.password_hashing),
    )

    app.state.csms = csms_route.Hub(engine)

    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, larger=LARGER_BODIES)
    # Outside the body limit (a refused source's body is never read), inside the pages'
    # security headers (added by install_web, so its refusal page carries them). A gateway
    # (OCPP only) limits its sources the same way.
    app.add_middleware(
        SourceLimits,
        limits=settings.source_limits,
        engine=engine,
        clock=app.state.fleet.clock,
        refusal_page=plain_page,
    )
    if api:
        chargers.install(app)  # the PIN reveal's route, ahead of the routers (docs/PERFORMANCE.md)
        app.include_router(accounts.router)
        app.include_router(chargers.router)
        app.include_router(members_api.router)
        app.include_router(tickets_api.router)
        app.include_router(presence_api.router)
        app.include_router(factory_api.router)
        app.include_router(csms_api.router)
    if ocpp:
        app.include_router(csms_route.router)
    app.include_router(health_api.router)  # the load balancer's check, on gateways too
    if api:
        install_web(app)  # the app's pages under /app/ (docs/APP.md)
        declare_refusals(app)
    return app


def refusal_response(error: FleetError) -> JSONResponse:
    """The one shape of every answer but a success: `{"error": code, "detail": what to do}`."""
    return JSONResponse(
        status_code=error.status,
        content={"error": error.code, "detail": str(error)},
        headers=error.headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure answers `{"error", "detail"}`, the routing's own included."""

    @app.exception_handler(FleetError)
    async def fleet_error(_request: Request, error: FleetError) -> JSONResponse:
        return refusal_response(error)

    @app.exception_handler(ChargepinError)
    async def rule_refused(_request: Request, error: ChargepinError) -> JSONResponse:
        # A core rule refused the input (a weak PIN, a bad version, ...): the caller's error.
        return JSONResponse(status_code=422, content={"error": "invalid", "detail": str(error)})

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in error.errors()]
        return JSONResponse(
            status_code=422,
            content={"error": "invalid_request", "detail": "; ".join(problems)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def routing_refused(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself: no route, wrong method, a body it could not read.
        detail = error.detail
        if error.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint; the endpoints are listed at /docs"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            detail = f"{request.method} is not allowed here; this endpoint accepts {allowed}"
        return JSONResponse(
            status_code=error.status_code,
            content={"error": _HTTP_CODES.get(error.status_code, "http_error"), "detail": detail},
            headers=error.headers,
        )

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_refused(request: Request, error: Exception) -> JSONResponse:
        # Raised in a handler or by the commit before the response (deps.session): a write the
        # database did not take is never answered 200.
        answer = refusal(error)
        if answer is None:
            return internal_error(request, error)
        logger.warning("%s %s refused by the database: %s", request.method, request.url.path, error)
        return refusal_response(answer)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        return internal_error(request, error)


def internal_error(request: Request, error: Exception) -> JSONResponse:
    """500 naming an incident in the log, never the exception, SQL or a path (they help an
    attacker, not the user)."""
    incident = secrets.token_hex(4)
    logger.error(
        "incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=error
    )
    return JSONResponse(
        status_code=500,
        content={
            "error": "internal_error",
            "detail": f"the fleet service failed on this request (incident {incident}, in its "
            "log); try again later, and report the incident if it persists",
        },
    )


def _problem(error: Any) -> str:
    """One validation problem as `where: what`; a body that is not JSON says so."""
    where = ".".join(str(p) for p in error.get("loc", ()))
    if error.get("type") == "json_invalid":
        position = error.get("loc", ("body", "?"))[-1]
        return f"the body is not valid JSON (at character {position})"
    return f"{where}: {error.get('msg', 'invalid')}"
