"""Accounts: register, log in (bearer token), who am I, log out, end sessions, new password."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, EmailStr, Field

from chargepin.fleet import accounts
from chargepin.fleet.api.refusals import THROTTLED, refused
from chargepin.fleet.deps import DB, CurrentUser, bearer_digest
from chargepin.fleet.errors import Unauthorized
from chargepin.fleet.security import MIN_PASSWORD
from chargepin.fleet.source_limits import request_address
from chargepin.fleet.times import utc_now

router = APIRouter(tags=["accounts"])

Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=200)]


class Credentials(BaseModel):
    email: EmailStr
    password: Password


class PasswordChange(BaseModel):
    old_password: Annotated[str, Field(min_length=1, max_length=200)]
    new_password: Password


class Account(BaseModel):
    id: int
    email: str


class SessionToken(BaseModel):
    token: str
    expires_at: dt.datetime


class SessionsEnded(BaseModel):
    sessions_ended: int = Field(description="How many logins (bearer tokens) stopped working.")


def _attempt(request: Request, email: str) -> accounts.Attempt:
    return accounts.Attempt(email, request_address(request))


def _token(authorization: str | None) -> bytes:
    digest = bearer_digest(authorization)
    if digest is None:  # CurrentUser has refused it already; kept for the type
        raise Unauthorized("log in first: send Authorization: Bearer <token> from /login")
    return digest


@router.post(
    "/register",
    status_code=201,
    response_model=Account,
    responses=THROTTLED | refused(409, why={409: "conflict: the address has an account; log in"}),
)
def register(body: Credentials, db: DB, request: Request) -> Account:
    """Create an account (argon2id password hash); 409 if the address has one (counted)."""
    client = request_address(request)
    state = request.app.state.fleet
    user = accounts.register(
        db, state.passwords, str(body.email), body.password, client, state.clock.now()
    )
    return Account(id=user.id, email=user.email)


@router.post(
    "/login",
    response_model=SessionToken,
    responses=THROTTLED | refused(401, why={401: "unauthorized: wrong e-mail or password"}),
)
def login(body: Credentials, db: DB, request: Request) -> SessionToken:
    """Exchange e-mail and password for a bearer token; wrong passwords are throttled (429)."""
    state = request.app.state.fleet
    user = accounts.check_password(
        db, state.passwords, _attempt(request, str(body.email)), body.password, state.clock.now()
    )
    expires = utc_now(state.clock) + dt.timedelta(seconds=state.settings.token_lifetime)
    return SessionToken(token=accounts.start_session(db, user, expires), expires_at=expires)


@router.get("/me", response_model=Account)
def me(user: CurrentUser) -> Account:
    return Account(id=user.id, email=user.email)


@router.post("/logout", status_code=204)
def logout(
    db: DB, _user: CurrentUser, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """End this login: its token stops working at once."""
    accounts.end_session(db, _token(authorization))
    return Response(status_code=204)


@router.post("/sessions/revoke-all", response_model=SessionsEnded)
def revoke_all(db: DB, user: CurrentUser) -> SessionsEnded:
    """End every login of this account, this one included (a lost or stolen phone)."""
    return SessionsEnded(sessions_ended=accounts.end_sessions(db, user))


@router.post(
    "/me/password",
    response_model=SessionsEnded,
    responses=THROTTLED | refused(403, why={403: "forbidden: the old password is wrong"}),
)
def change_password(
    body: PasswordChange,
    db: DB,
    user: CurrentUser,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> SessionsEnded:
    """A new password, given the old one (throttled like a login); every other login ends."""
    ended = accounts.change_password(
        db,
        request.app.state.fleet.passwords,
        user,
        _attempt(request, user.email),
        body.old_password,
        body.new_password,
        keep=_token(authorization),
        now=request.app.state.fleet.clock.now(),
    )
    return SessionsEnded(sessions_ended=ended)
