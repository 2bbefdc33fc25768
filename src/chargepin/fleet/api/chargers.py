"""Chargers: commissioning by sticker, the member's list, Charger Info, PINs by epoch, audit."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from chargepin.core.limits import MAX_EPOCH, SERIAL_RE
from chargepin.fleet import chargers, claims
from chargepin.fleet.access import require_member, require_owner
from chargepin.fleet.api.refusals import THROTTLED, refused
from chargepin.fleet.deps import (
    DB,
    AppVersion,
    BeforeCursor,
    CurrentUser,
    PageLimit,
    SerialPath,
    bearer_digest,
    check_app_version,
    user_for_token,
)
from chargepin.fleet.reveals import LoopReveals, member_reveal
from chargepin.fleet.source_limits import request_address
from chargepin.fleet.times import utc_now

if TYPE_CHECKING:
    from chargepin.fleet.app import FleetState

router = APIRouter(tags=["chargers"])


class ClaimRequest(BaseModel):
    payload: str = Field(
        min_length=1,
        max_length=200,
        description="The scanned sticker text, CHARGEPIN:1:<serial>:<claim code>.",
    )


class ChargerInfoOut(BaseModel):
    """Charger Info (PRODUCT.md): the PIN is included only when the charger uses one."""

    serial: str
    model: str
    firmware: str
    role: Literal["owner", "user"]
    pin_class: Literal["mandatory", "optional", "unsupported"]
    pin_class_reason: str
    pin_changeable: bool = Field(description="the owner may change the PIN (firmware 6.11+)")
    pin_can_disable: bool = Field(description="the owner may switch the PIN off")
    pin_enabled: bool
    epoch: int
    pin: str | None
    message: str


class ChargerSummary(BaseModel):
    serial: str
    model: str
    role: Literal["owner", "user"]


class EpochPin(BaseModel):
    serial: str
    epoch: int
    pin: str


class PinRevealEntry(BaseModel):
    id: int = Field(description="pass the last one as `before` for the next page")
    email: str
    epoch: int
    app_version: str
    at: dt.datetime


def _info(view: chargers.ChargerView) -> ChargerInfoOut:
    return ChargerInfoOut(
        serial=view.serial,
        model=view.model,
        firmware=str(view.firmware),
        role=view.role,  # type: ignore[arg-type]
        pin_class=view.policy.mode.value,
        pin_class_reason=view.policy.reason,
        pin_changeable=view.policy.changeable,
        pin_can_disable=view.policy.can_disable,
        pin_enabled=view.pin_enabled,
        epoch=view.epoch,
        pin=None if view.pin is None else view.pin.digits,
        message=view.message,
    )


@router.post(
    "/chargers/claim",
    status_code=201,
    response_model=ChargerInfoOut,
    responses=THROTTLED
    | refused(
        403,
        409,
        why={
            403: "invalid_sticker: the claim code is not this charger's (counted by the throttle)",
            409: "conflict: the charger has an owner already; ask them to invite you",
        },
    ),
)
def claim(
    body: ClaimRequest, db: DB, user: CurrentUser, version: AppVersion, request: Request
) -> ChargerInfoOut:
    """Commission a charger by its sticker: the first valid claim makes the caller its owner."""
    state = request.app.state.fleet
    now = state.clock.now()
    host = request_address(request)
    return _info(claims.commission(db, state.vault, user, host, body.payload, version, now))


@router.get("/chargers", response_model=list[ChargerSummary])
def list_chargers(db: DB, user: CurrentUser) -> list[ChargerSummary]:
    """The chargers the caller owns or was invited to."""
    return [
        ChargerSummary(serial=c.serial, model=c.model, role=c.role)  # type: ignore[arg-type]
        for c in chargers.chargers_of(db, user)
    ]


@router.get("/chargers/{serial}", response_model=ChargerInfoOut)
def charger_info(
    serial: SerialPath,
    db: DB,
    user: CurrentUser,
    request: Request,
    x_app_version: Annotated[str | None, Header()] = None,
) -> ChargerInfoOut:
    """Charger Info for a member; with the PIN (audited; needs X-App-Version) when it is on."""
    charger, member = require_member(db, user, serial)
    state = request.app.state.fleet
    minimum = request.app.state.fleet.settings.min_app_version
    shows = chargers.shows_pin(charger)
    version = check_app_version(minimum, x_app_version) if shows else None
    view = chargers.charger_view(
        db, state.vault, charger, member.role, user, version, state.clock.now()
    )
    return _info(view)


@router.get(
    "/chargers/{serial}/pin",
    response_model=EpochPin,
    responses=refused(
        409,
        why={
            409: "the charger has no PIN (conflict), or epoch_not_attested: it has not shown "
            "that epoch yet; relay its open info (POST .../reconcile) and ask again"
        },
    ),
)
async def charger_pin(
    serial: SerialPath,
    epoch: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_EPOCH,
            description=f"The epoch the charger advertises now (a u32: 0..{MAX_EPOCH}).",
        ),
    ],
    version: AppVersion,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """The PIN of `epoch` for a member (the troubleshooting screen after a wrong PIN); audited.

    A well-formed request is answered by `RevealRoute` (below) before it gets here; this
    declaration documents the endpoint and answers what that route leaves to FastAPI's
    validation (a malformed serial or epoch: 422).
    """
    state = request.app.state.fleet
    return JSONResponse(
        await run_in_threadpool(reveal_pin, state, authorization, serial, epoch, version)
    )


def reveal_pin(
    state: FleetState, authorization: str | None, serial: str, epoch: int, version: str
) -> dict[str, object]:
    """The reveal as one unit: login, live membership, the attested epoch, vault, PIN, audit.

    The hot path of the service (every connection of a phone without a bond), run in one
    thread-pool hop (docs/PERFORMANCE.md). Built already in EpochPin's shape.
    """
    digest = bearer_digest(authorization)
    if digest is not None:
        answer = member_reveal(state, state.engine, digest, serial, epoch, version)
        if answer is not None:
            return answer
    with state.sessions() as db, db.begin():  # the ordinary path says what is wrong
        user = user_for_token(db, authorization, utc_now(state.clock))
        charger, _member = require_member(db, user, serial)
        pin = chargers.pin_for_epoch(
            db, state.vault, charger, user.id, epoch, version, state.clock.now()
        )
        return {"serial": charger.serial, "epoch": epoch, "pin": pin.digits}


_EPOCH_QUERY = re.compile(rb"epoch=([0-9]{1,10})")
"""The reveal's whole query string when it is well-formed (what the app sends)."""


class RevealRoute(Route):
    """`GET /chargers/{serial}/pin?epoch=N`, well-formed, without FastAPI's per-request work.

    FastAPI's dependency solving, parameter validation and route matching through the
    included routers were most of what the reveal cost on top of a bare endpoint
    (docs/PERFORMANCE.md, "Where the reveal's time goes"). This route matches only a request
    whose serial and epoch FastAPI would accept as they are (the same pattern, length and range
    from core.limits) and then runs every check the documented endpoint runs, in its order: the
    app's version (426), then `reveal_pin` (token, membership, attested epoch, audit). Anything
    else (another method, a malformed serial or epoch, another query) does not match and goes on
    to `charger_pin`, whose validation says what is wrong. Installed ahead of the API's routers
    (`install`); not in the OpenAPI schema, where `charger_pin` describes the endpoint.
    """

    def __init__(self) -> None:
        super().__init__(
            "/chargers/{serial}/pin", _fast_reveal, methods=["GET"], include_in_schema=False
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        query = _EPOCH_QUERY.fullmatch(scope["query_string"])
        if query is None or int(query[1]) > MAX_EPOCH:
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is not Match.FULL or not SERIAL_RE.fullmatch(child["path_params"]["serial"]):
            return Match.NONE, {}
        return match, child


async def _fast_reveal(request: Request) -> Response:
    state: FleetState = request.app.state.fleet
    headers = request.headers
    version = check_app_version(state.settings.min_app_version, headers.get("x-app-version"))
    epoch = int(request.scope["query_string"][6:])  # RevealRoute matched `epoch=<digits>`
    serial: str = request.path_params["serial"]
    authorization = headers.get("authorization")
    digest = bearer_digest(authorization)
    loop: LoopReveals = request.app.state.loop_reveals
    answer = None if digest is None else await loop.reveal(state, digest, serial, epoch, version)
    if answer is None:
        answer = await run_in_threadpool(reveal_pin, state, authorization, serial, epoch, version)
    return JSONResponse(answer)


def install(app: FastAPI) -> None:
    """Add `RevealRoute` ahead of the API's routers (call before including them)."""
    app.router.routes.append(RevealRoute())
    state: FleetState = app.state.fleet
    app.state.loop_reveals = LoopReveals(state.engine, state.settings)


@router.get("/chargers/{serial}/reveals", response_model=list[PinRevealEntry])
def charger_reveals(
    serial: SerialPath,
    db: DB,
    user: CurrentUser,
    limit: PageLimit = 100,
    before: BeforeCursor = None,
) -> list[PinRevealEntry]:
    """The owner's audit list: who saw which epoch's PIN, when, with which app (newest first).

    Paged: pass the last entry's `id` as `before` for the next page; a page shorter than
    `limit` is the last.
    """
    charger = require_owner(db, user, serial, "see who viewed the PIN")
    return [
        PinRevealEntry(id=r.id, email=r.email, epoch=r.epoch, app_version=r.app_version, at=r.at)
        for r in chargers.reveals_of(db, charger, limit, before)
    ]
