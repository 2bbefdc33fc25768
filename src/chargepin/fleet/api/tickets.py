"""Tickets for owner actions, the charger's receipts, reconciliation (service: fleet/tickets.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from chargepin.core.attestation import ATTESTATION_SIZE, AttestedState
from chargepin.core.epochs import FINGERPRINT_SIZE
from chargepin.core.limits import CHALLENGE_SIZE, MAX_EPOCH, MAX_GENERATION
from chargepin.core.tickets import Action
from chargepin.fleet import tickets as service
from chargepin.fleet.api.refusals import refused
from chargepin.fleet.deps import DB, AppVersion, CurrentUser, SerialPath

router = APIRouter(tags=["tickets"])


class TicketRequest(BaseModel):
    challenge: str = Field(
        pattern=f"^[0-9a-fA-F]{{{2 * CHALLENGE_SIZE}}}$",
        description="the fresh challenge read from the charger, hex",
    )
    action: Action
    args: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict,
        max_length=8,
        description='e.g. {"pin": "482913"} or {"next_epoch": "1"} for change_pin; '
        '{"address": "C1:..:F5"} or {"all": "1"} for remove_phone',
    )


class TicketResponse(BaseModel):
    ticket: str = Field(description="hex; write it to the charger's admin point before it expires")
    expires_at: dt.datetime


class ReceiptRequest(BaseModel):
    receipt: str = Field(pattern="^([0-9a-fA-F]{2})+$", max_length=4096)


class PinStateOut(BaseModel):
    pin_enabled: bool
    epoch: int
    generation: int = Field(description="the PIN generation; a re-key moves to the next")


class OpenInfoReport(BaseModel):
    """What the phone read from the charger's open info characteristic, relayed unchanged."""

    epoch: int = Field(ge=0, le=MAX_EPOCH, description=f"u32 on the air: 0..{MAX_EPOCH}")
    fingerprint: str = Field(pattern=f"^[0-9a-fA-F]{{{2 * FINGERPRINT_SIZE}}}$")
    pin_enabled: bool
    attestation: str = Field(
        pattern=f"^[0-9a-fA-F]{{{2 * ATTESTATION_SIZE}}}$",
        description="the charger's MAC on epoch, on/off, fingerprint and generation "
        "(docs/PROTOCOL.md)",
    )
    generation: int = Field(
        default=0,
        ge=0,
        le=MAX_GENERATION,
        description="the PIN generation the info shows (0 when it shows none)",
    )


class ReconciledOut(PinStateOut):
    live: Literal["committed", "pending", "unknown"] = Field(
        description="which of the fleet's states the charger shows; fetch that epoch's PIN"
    )


@router.post("/chargers/{serial}/tickets", response_model=TicketResponse, responses=refused(409))
def request_ticket(
    serial: SerialPath,
    body: TicketRequest,
    user: CurrentUser,
    _version: AppVersion,
    db: DB,
    request: Request,
) -> TicketResponse:
    """A ticket for one action against the charger's challenge; the role decides which actions."""
    fleet = request.app.state.fleet
    issued = service.request_ticket(
        db,
        fleet.vault,
        user,
        serial,
        bytes.fromhex(body.challenge),
        body.action,
        body.args,
        fleet.clock.now(),
    )
    return TicketResponse(ticket=issued.blob.hex(), expires_at=issued.expires_at)


@router.post("/chargers/{serial}/receipts", response_model=PinStateOut)
def submit_receipt(
    serial: SerialPath, body: ReceiptRequest, user: CurrentUser, db: DB, request: Request
) -> PinStateOut:
    """Hand in the charger's receipt; a matching pending change is committed."""
    state = service.submit_receipt(
        db, request.app.state.fleet.vault, user, serial, bytes.fromhex(body.receipt)
    )
    return PinStateOut(
        pin_enabled=state.pin_enabled, epoch=state.epoch, generation=state.generation
    )


@router.post("/chargers/{serial}/reconcile", response_model=ReconciledOut)
def reconcile(
    serial: SerialPath, body: OpenInfoReport, user: CurrentUser, db: DB, request: Request
) -> ReconciledOut:
    """Tell the fleet what the charger shows; a change whose receipt was lost gets committed."""
    state = service.reconcile(
        db,
        request.app.state.fleet.vault,
        user,
        serial,
        AttestedState(
            body.epoch, body.pin_enabled, bytes.fromhex(body.fingerprint), body.generation
        ),
        bytes.fromhex(body.attestation),
    )
    return ReconciledOut(
        pin_enabled=state.pin_enabled,
        epoch=state.epoch,
        generation=state.generation,
        live=state.live,
    )
