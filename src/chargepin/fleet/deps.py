"""Request dependencies: the unit of work, the caller's account, the app's version."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from chargepin.core.errors import InvalidVersion
from chargepin.core.limits import SERIAL_MAX_LENGTH, SERIAL_PATTERN
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet.errors import FleetError, Unauthorized, UpgradeRequired
from chargepin.fleet.models import Token, User
from chargepin.fleet.security import token_digest
from chargepin.fleet.times import aware, utc_now


def session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error.

    Used as `UnitOfWork` (scope "function"): FastAPI then runs the commit before the response
    is sent. With its default scope ("request") the commit ran after, so a client acting at once
    on a 201 (logging in after registering) could find nothing committed yet. A commit that
    fails is then the response: the app maps the database's refusal (`db.refusal`) to 503 or 409.

    A FleetError with `keep_writes` (a wrong claim code, counted in this transaction) commits
    before it is answered: the count is part of the refusal (issue 9: it used to be written on a
    second connection from the pool, which 20 parallel claims ran dry).
    """
    state = request.app.state.fleet
    with state.sessions() as db:
        kept: FleetError | None = None
        with db.begin():
            try:
                yield db
            except FleetError as refusal:
                if not refusal.keep_writes:
                    raise
                kept = refusal  # a refusal that counted itself: leave the block, it commits
        if kept is not None:
            raise kept  # then answer it (the app's FleetError handler)


UnitOfWork = Depends(session, scope="function")


def bearer_digest(authorization: str | None) -> bytes | None:
    """The stored form of the bearer token in an Authorization header, if it has one."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    return token_digest(authorization[7:].strip())


def user_for_token(db: Session, authorization: str | None, now: dt.datetime) -> User:
    """The account behind `Authorization: Bearer <token>`, or 401 saying to log in."""
    digest = bearer_digest(authorization)
    if digest is None:
        raise Unauthorized("log in first: send Authorization: Bearer <token> from /login")
    return user_for_digest(db, digest, now)


def user_for_digest(db: Session, digest: bytes, now: dt.datetime) -> User:
    """The account of the login whose token has this digest (a bearer token or the web app's
    session cookie), or 401 saying to log in again."""
    # One query for the token and its account: this runs on every request (docs/PERFORMANCE.md).
    row = db.execute(
        select(Token.expires_at, User)
        .join(User, User.id == Token.user_id)
        .where(Token.token_hash == digest)
    ).first()
    if row is None or aware(row[0]) <= now:
        raise Unauthorized("the login expired or is unknown; log in again")
    user: User = row[1]
    return user


def current_user(
    request: Request,
    db: Annotated[Session, UnitOfWork],
    authorization: Annotated[str | None, Header()] = None,
) -> User:
    """The caller's account (a dependency of every logged-in route)."""
    return user_for_token(db, authorization, utc_now(request.app.state.fleet.clock))


def check_app_version(minimum: str, header: str | None) -> str:
    """The calling app's version; 426 "update the app" below `minimum` or when it is not one.

    A version is 1 to 4 numbers of up to 6 digits (core.policy), so what is parsed, audited
    (a String(32) column) and quoted back is bounded: 4,301 digits were a 500 on int(), 33+
    characters a 500 on PostgreSQL (issue 9).
    """
    accepted, sent = _judge_app_version(minimum, header or "")
    if accepted is None:
        raise UpgradeRequired(
            f"this app's version (X-App-Version: {sent}) cannot show charger PINs; "
            f"update the app to {minimum} or newer"
        )
    return accepted


@functools.lru_cache(maxsize=256)
def _judge_app_version(minimum: str, header: str) -> tuple[str | None, str]:
    """(the version as audited, or None when refused; what the refusal quotes back). Cached:
    every PIN reveal asks, and an app fleet sends a handful of versions (the cache is bounded,
    so a caller sending a new header each time only evicts)."""
    try:
        version = FirmwareVersion.parse(header)
    except InvalidVersion:
        version = None
    if version is None or version < FirmwareVersion.parse(minimum):
        if version is not None:
            return None, str(version)
        return None, "not a version like 2.3.0" if header else "not sent"
    return str(version), ""


async def app_version(
    request: Request, x_app_version: Annotated[str | None, Header()] = None
) -> str:
    """The dependency form (async: no I/O, so no hop through the thread pool)."""
    return check_app_version(request.app.state.fleet.settings.min_app_version, x_app_version)


DB = Annotated[Session, UnitOfWork]
CurrentUser = Annotated[User, Depends(current_user)]
AppVersion = Annotated[str, Depends(app_version)]
SerialPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SERIAL_MAX_LENGTH,
        pattern=f"^{SERIAL_PATTERN}$",
        description="The charger's serial as printed on its label.",
    ),
]
"""A charger serial in a URL: what the factory can make (core.limits), else 422 before any
look-up."""

MAX_PAGE = 1000
"""Entries one page of a list answers at most (the audit, the security events)."""
MAX_ROW_ID = 2**63 - 1
"""The largest row id any of our databases can hold (PostgreSQL's BIGINT)."""

PageLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"entries on this page, 1 to {MAX_PAGE}")
]
BeforeCursor = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ROW_ID,
        description="the `id` of the last entry of the previous page: this page starts below "
        "it (keyset paging: newer entries never shift the pages)",
    ),
]
"""Keyset paging, newest first: new rows get higher ids, so a page below a given id is the same
page however many rows arrive meanwhile (docs/FLEET.md, "Paging")."""
