"""The radio app: its Bluetooth screens, the shared static files, and the fleet's pages
forwarded, behind the fleet's own security headers (fleet/web/headers.py)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from chargepin.app import pages
from chargepin.app.forward import Forwarder
from chargepin.app.radio import Radio
from chargepin.fleet.body_limit import MAX_BODY_BYTES, BodyLimit
from chargepin.fleet.web import LARGER_BODIES
from chargepin.fleet.web.headers import PREFIX, SecurityHeaders
from chargepin.phone.fleet_client import APP_VERSION

FORWARDED_METHODS = ["GET", "HEAD", "POST"]
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]
"""The only Host names the app answers: a page of another site whose name was made to resolve
to 127.0.0.1 (DNS rebinding) is same-origin with itself, and would otherwise drive this app's
radio with an account of its own and pass the Origin check."""


def create_app(
    fleet_url: str,
    radio: Radio,
    *,
    app_version: str = APP_VERSION,
    fleet_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The radio app for the fleet at `fleet_url`; its phone (`radio`) is opened by the app's
    lifespan unless it already is (`chargepin app` opens it first, to say in one line that a
    transport does not open), and closed with it.

    `fleet_transport` (tests) reaches the fleet in-process instead of over the network."""
    forwarder = Forwarder(fleet_url, fleet_transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not radio.started:
            await radio.start()
        try:
            yield
        finally:
            await radio.stop()
            await forwarder.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.nearby = True
    app.state.radio_app = pages.AppState(
        radio=radio,
        fleet_url=fleet_url,
        csrf_key=secrets.token_bytes(32),
        app_version=app_version,
        fleet_transport=fleet_transport,
    )

    async def screen(_request: Request, error: Exception) -> Response:
        assert isinstance(error, pages.Screen)
        return error.response

    app.add_exception_handler(pages.Screen, screen)
    app.include_router(pages.router)
    app.mount(
        PREFIX + "/static",
        StaticFiles(packages=[("chargepin.fleet.web", "static")]),
        name="app-static",
    )

    async def forward(request: Request) -> Response:
        return await forwarder.forward(request)

    app.add_api_route(PREFIX, forward, methods=FORWARDED_METHODS, include_in_schema=False)
    app.add_api_route(
        PREFIX + "/{rest:path}", forward, methods=FORWARDED_METHODS, include_in_schema=False
    )
    app.add_middleware(SecurityHeaders)
    # The fleet's limits (the photo's route may send more), before anything is read.
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, larger=LARGER_BODIES)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    return app
