"""The web app's one Jinja2 environment: the fleet's pages and a radio app's Bluetooth screens
(chargepin.app) render with it, so they share the base template, the nav and the stylesheet.

Autoescape is on for every template. `nearby` in every page's context says whether to offer the
radio app's Nearby link: on a radio app's own screens, and on the fleet's pages when the radio
app forwarded the request (it adds `RADIO_HEADER`; harmless when anyone else sends it: the link
then leads to a page the fleet does not have).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from chargepin.fleet.sticker_photo import SENT_SIDE

RADIO_HEADER = "X-Chargepin-Radio"
"""What a radio app adds to the requests it forwards to the fleet's pages."""


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _nearby(request: Request) -> dict[str, Any]:
    radio = bool(getattr(request.app.state, "nearby", False))
    return {"nearby": radio or request.headers.get(RADIO_HEADER) == "1"}


templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("chargepin.fleet.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    ),
    context_processors=[_nearby],
)
templates.env.filters["when"] = _when
templates.env.globals["photo_side"] = SENT_SIDE
