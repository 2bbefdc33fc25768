"""What the owner sees of a charger's OCPP link: its security events and the commands sent to
it (service: fleet/csms/)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel, Field

from chargepin.core.tickets import Action
from chargepin.fleet.api.refusals import refused
from chargepin.fleet.csms import events, outbox, registry
from chargepin.fleet.deps import DB, BeforeCursor, CurrentUser, PageLimit, SerialPath
from chargepin.fleet.times import utc_now

router = APIRouter(tags=["ocpp"])


class StationEventOut(BaseModel):
    id: int = Field(description="pass the last one as `before` for the next page")
    type: str = Field(description="the SecurityEventNotification type (docs/OCPP.md)")
    meaning: str = Field(description="what it means, in words")
    occurred_at: dt.datetime = Field(description="when the charger says it happened")
    received_at: dt.datetime
    tech_info: str | None


class CommandOut(BaseModel):
    id: int = Field(description="pass the last one as `before` for the next page")
    action: str
    args: dict[str, str]
    state: str = Field(description="waiting, sent, applied (with the receipt) or failed")
    created_at: dt.datetime
    updated_at: dt.datetime
    attempts: int = Field(description="tickets sent to the charger for it")
    reason: str | None = Field(description="why it failed (the charger's reason), or a note")
    detail: str | None
    receipt: str | None = Field(description="the charger's signed receipt, hex, once applied")


class CommandRequest(BaseModel):
    action: Action | Literal["csms_password"] = Field(
        description="enable_pin, change_pin, disable_pin, remove_phone, rekey (tickets), or "
        "csms_password (a fresh OCPP password, of which the fleet keeps only a hash)"
    )
    args: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=8, description="the ticket's arguments"
    )


class ConnectionOut(BaseModel):
    online: bool
    connected_at: dt.datetime | None
    last_seen: dt.datetime | None
    booted_at: dt.datetime | None
    connector_status: str | None


@router.get("/chargers/{serial}/security-events", response_model=list[StationEventOut])
def security_events(
    serial: SerialPath,
    user: CurrentUser,
    db: DB,
    limit: PageLimit = 100,
    before: BeforeCursor = None,
) -> list[StationEventOut]:
    """The security events the charger sent over OCPP, newest first, in words (owner only).

    Paged: pass the last entry's `id` as `before` for the next page; a page shorter than
    `limit` is the last.
    """
    return [StationEventOut(**vars(e)) for e in events.listed(db, user, serial, limit, before)]


@router.get("/chargers/{serial}/commands", response_model=list[CommandOut])
def commands(
    serial: SerialPath,
    user: CurrentUser,
    db: DB,
    limit: PageLimit = 100,
    before: BeforeCursor = None,
) -> list[CommandOut]:
    """The owner actions sent (or waiting to be sent) to the charger over OCPP, newest first."""
    return [CommandOut(**vars(c)) for c in outbox.listed(db, user, serial, limit, before)]


@router.post(
    "/chargers/{serial}/commands",
    status_code=202,
    response_model=CommandOut,
    responses=refused(
        409,
        why={
            409: "the PIN class does not allow it, or too_many_queued: the most commands one "
            "charger may have waiting already wait; wait until it applied them",
        },
    ),
)
def send_command(
    serial: SerialPath,
    body: CommandRequest,
    user: CurrentUser,
    db: DB,
    request: Request,
    background: BackgroundTasks,
) -> CommandOut:
    """Queue an owner action for the charger (owner only): sent at once if it is connected,
    else when it connects. `GET .../commands` follows it to applied or failed."""
    fleet = request.app.state.fleet
    queued = outbox.request(
        db,
        fleet.vault,
        user,
        serial,
        str(body.action),
        body.args,
        utc_now(fleet.clock),
        fleet.settings.outbox_max_open,
    )
    background.add_task(request.app.state.csms.wake, queued.charger_id)
    return CommandOut(**vars(queued.command))


@router.get("/chargers/{serial}/connection", response_model=ConnectionOut)
def connection(serial: SerialPath, user: CurrentUser, db: DB, request: Request) -> ConnectionOut:
    """Whether the charger is connected over OCPP, and when it was last heard (owner only)."""
    fleet = request.app.state.fleet
    view = registry.connection_of(
        db, user, serial, utc_now(fleet.clock), fleet.settings.ocpp_heartbeat_interval
    )
    return ConnectionOut(**vars(view))
