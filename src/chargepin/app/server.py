"""The radio app: its Bluetooth screens, the shared static files, and the fleet's pages
forwarded, behind the fleet's own security headers (fleet/web/headers.py)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from chargepin.app import pages
from chargepin.app.forward import Forwarder
from chargepin.app.radio import Radio, RadioOptions
from chargepin.fleet.web.headers import PREFIX, SecurityHeaders
from chargepin.phone.fleet_client import APP_VERSION

FORWARDED_METHODS = ["GET", "HEAD", "POST"]


def create_app(
    fleet_url: str,
    options: RadioOptions,
    *,
    app_version: str = APP_VERSION,
    fleet_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The radio app for the fleet at `fleet_url`; its phone opens with the app's lifespan.

    `fleet_transport` (tests) reaches the fleet in-process instead of over the network."""
    radio = Radio(options)
    forwarder = Forwarder(fleet_url, fleet_transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
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
    return app
