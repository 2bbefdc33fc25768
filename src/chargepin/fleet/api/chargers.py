"""Chargers: commissioning by sticker, the member's list, Charger Info, PINs by epoch, audit."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from chargepin.core.limits import MAX_EPOCH
from chargepin.fleet import chargers, claims
from chargepin.fleet.access import live_member_by_token, require_member, require_owner
from chargepin.fleet.api.refusals import THROTTLED
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
from chargepin.fleet.source_limits import request_address
from chargepin.fleet.times import utc_now

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


@router.post("/chargers/claim", status_code=201, response_model=ChargerInfoOut, responses=THROTTLED)
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


@router.get("/chargers/{serial}/pin", response_model=EpochPin)
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

    The hot path of the service (every connection of a phone without a bond): the login, role,
    vault and audit work runs as one unit in one thread-pool hop (docs/PERFORMANCE.md).
    """
    state = request.app.state.fleet

    def reveal() -> dict[str, object]:
        digest = bearer_digest(authorization)
        with state.engine.begin() as conn:
            now_utc = utc_now(state.clock)
            found = None if digest is None else live_member_by_token(conn, digest, serial, now_utc)
            if found is not None:
                pin = chargers.pin_for_epoch(
                    conn, state.vault, found, found.user_id, epoch, version, state.clock.now()
                )
                return {"serial": found.serial, "epoch": epoch, "pin": pin.digits}
        with state.sessions() as db, db.begin():  # the ordinary path says what is wrong
            user = user_for_token(db, authorization, utc_now(state.clock))
            charger, _member = require_member(db, user, serial)
            pin = chargers.pin_for_epoch(
                db, state.vault, charger, user.id, epoch, version, state.clock.now()
            )
            return {"serial": charger.serial, "epoch": epoch, "pin": pin.digits}

    # Built here, already in EpochPin's shape: FastAPI then skips re-validating the answer.
    return JSONResponse(await run_in_threadpool(reveal))


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
