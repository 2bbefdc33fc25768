"""GET /health: whether this API process can reach the database, and which process it is.

A load balancer's health check (docs/DEPLOY.md): 200 while the process answers and its
database does, 503 with Retry-After when the database does not. `worker` is the answering
process's id, so an operator (and the multi-worker test) sees requests spread over the
processes of `chargepin fleet serve --workers N`; it tells a stranger nothing they could use.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from chargepin.fleet.errors import ServiceBusy

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: str = Field(description='"ok"')
    worker: int = Field(description="the answering API process's id")


@router.get("/health", response_model=HealthOut)
def health(request: Request) -> HealthOut:
    """200 when this process and its database answer; 503 with Retry-After when not."""
    try:
        with request.app.state.fleet.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
        raise ServiceBusy("the fleet's database does not answer; try again") from error
    return HealthOut(status="ok", worker=os.getpid())
