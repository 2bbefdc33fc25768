"""The factory line's API (admin accounts only): make chargers, get their bundles and stickers.

The answer carries the chargers' factory secrets (the bundle the line flashes into each charger)
and one-time claim codes, so only accounts marked admin (`chargepin fleet make-admin`) may call
it; everyone else gets 403 and learns nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from chargepin.core.errors import InvalidConfig, InvalidVersion, ProvisioningRefused
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import factory
from chargepin.fleet.api.refusals import refused
from chargepin.fleet.deps import DB, CurrentUser
from chargepin.fleet.errors import Forbidden, Unprocessable
from chargepin.fleet.times import utc_now

router = APIRouter(tags=["factory"])

MAX_PER_REQUEST = 1000  # larger runs: `chargepin fleet provision` on the factory's host


class ProvisionRequest(BaseModel):
    count: Annotated[int, Field(ge=1, le=MAX_PER_REQUEST)]
    model: Annotated[str, Field(min_length=1, max_length=64)]
    firmware: Annotated[str, Field(min_length=1, max_length=32)]
    produced: dt.date
    serial_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,8}$")] = "CP"


class ProvisionedCharger(BaseModel):
    serial: str
    sticker: str = Field(description="The QR code's text: serial and one-time claim code.")
    bundle: dict[str, Any] = Field(description="`chargepin charger init --bundle` input.")


PROVISIONING_REFUSALS = refused(
    403,
    409,
    why={
        403: "forbidden: only factory (admin) accounts provision chargers",
        409: "provisioning_in_progress: another run with this serial prefix is in progress "
        "(PostgreSQL), or another writer held the database past the lock timeout (SQLite); "
        "nothing was made: wait for it, or use another prefix",
    },
)


@router.post(
    "/factory/chargers",
    status_code=201,
    response_model=list[ProvisionedCharger],
    responses=PROVISIONING_REFUSALS,
)
def provision_chargers(
    body: ProvisionRequest, user: CurrentUser, db: DB, request: Request
) -> list[ProvisionedCharger]:
    """Create chargers with fresh secrets (admin only); returns their bundles and stickers."""
    if not user.is_admin:
        raise Forbidden("only factory (admin) accounts can provision chargers")
    state = request.app.state.fleet
    try:
        made = factory.provision(
            db,
            state.vault,
            count=body.count,
            model=body.model,
            firmware=FirmwareVersion.parse(body.firmware),
            produced=body.produced,
            serial_prefix=body.serial_prefix,
            now=utc_now(state.clock),
        )
    except (ProvisioningRefused, InvalidConfig, InvalidVersion) as error:
        raise Unprocessable(str(error), code="cannot_provision") from error
    return [
        ProvisionedCharger(
            serial=charger.serial,
            sticker=charger.sticker.encode(),
            bundle=charger.bundle.to_dict(),
        )
        for charger in made
    ]
