"""Presence: nonces for a device to prove it is the charger, and the pairing PIN for a proof
(service: fleet/presence.py; rule and layout: core/presence.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from chargepin.core.presence import NONCE_SIZE, PROOF_SIZE
from chargepin.fleet import presence as service
from chargepin.fleet.api.refusals import refused
from chargepin.fleet.deps import DB, AppVersion, CurrentUser, SerialPath

router = APIRouter(tags=["presence"])

ADDRESS_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"


class NonceOut(BaseModel):
    nonce: str = Field(description=f"{NONCE_SIZE} octets, hex: write them to the charger")
    expires_at: float = Field(description="unix seconds after which the fleet refuses it")


class PresencePinRequest(BaseModel):
    nonce: str = Field(
        pattern=f"^[0-9a-fA-F]{{{2 * NONCE_SIZE}}}$",
        description="the nonce from POST /chargers/{serial}/presence/nonces, hex",
    )
    proof: str = Field(
        pattern=f"^[0-9a-fA-F]{{{2 * PROOF_SIZE}}}$",
        description="what the device's presence characteristic read back, hex",
    )
    address: str = Field(
        pattern=ADDRESS_PATTERN,
        description="this phone's address on that link, as sent on the air (AA:BB:CC:DD:EE:FF)",
    )


class PresencePinOut(BaseModel):
    serial: str
    epoch: int
    pin: str


@router.post(
    "/chargers/{serial}/presence/nonces",
    status_code=201,
    response_model=NonceOut,
    responses=refused(
        429,
        why={
            429: "too_many_nonces: the caller holds the most unused nonces for this charger; "
            "use one, or try again after Retry-After seconds"
        },
    ),
)
def presence_nonce(serial: SerialPath, user: CurrentUser, db: DB, request: Request) -> NonceOut:
    """A fresh single-use nonce (member only) for the device to prove it is this charger."""
    issued = service.issue_nonce(db, user, serial, request.app.state.fleet.clock.now())
    return NonceOut(nonce=issued.nonce.hex(), expires_at=issued.expires_at)


@router.post(
    "/chargers/{serial}/presence/pin", response_model=PresencePinOut, responses=refused(409, 410)
)
def presence_pin(
    serial: SerialPath,
    body: PresencePinRequest,
    user: CurrentUser,
    version: AppVersion,
    db: DB,
    request: Request,
) -> PresencePinOut:
    """The PIN to type, only for a device that proved it is this charger (audited)."""
    fleet = request.app.state.fleet
    vouched = service.pin_for_presence(
        db,
        fleet.vault,
        user,
        serial,
        bytes.fromhex(body.nonce),
        bytes.fromhex(body.proof),
        body.address,
        version,
        fleet.clock.now(),
    )
    return PresencePinOut(serial=serial, epoch=vouched.epoch, pin=vouched.pin.digits)
