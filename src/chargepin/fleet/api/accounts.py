"""Accounts: register, log in (bearer token), who am I."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import select

from chargepin.fleet.deps import DB, CurrentUser
from chargepin.fleet.errors import Conflict, Unauthorized
from chargepin.fleet.models import Token, User
from chargepin.fleet.security import (
    MIN_PASSWORD,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from chargepin.fleet.times import utc_now

router = APIRouter(tags=["accounts"])


class Credentials(BaseModel):
    email: EmailStr
    password: str = Field(min_length=MIN_PASSWORD, max_length=200)


class Account(BaseModel):
    id: int
    email: str


class SessionToken(BaseModel):
    token: str
    expires_at: dt.datetime


@router.post("/register", status_code=201, response_model=Account)
def register(body: Credentials, db: DB) -> Account:
    """Create an account (argon2id password hash)."""
    email = body.email.lower()
    if db.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"an account for {email} exists already; log in instead")
    user = User(email=email, password_hash=hash_password(body.password))
    db.add(user)
    db.flush()
    return Account(id=user.id, email=user.email)


@router.post("/login", response_model=SessionToken)
def login(body: Credentials, db: DB, request: Request) -> SessionToken:
    """Exchange e-mail and password for a bearer token."""
    user = db.scalar(select(User).where(User.email == body.email.lower()))
    if user is None or not verify_password(user.password_hash, body.password):
        raise Unauthorized("wrong e-mail or password")
    token = new_token()
    now = utc_now(request.app.state.fleet.clock)
    expires = now + dt.timedelta(seconds=request.app.state.fleet.settings.token_lifetime)
    db.add(Token(user_id=user.id, token_hash=token_digest(token), expires_at=expires))
    return SessionToken(token=token, expires_at=expires)


@router.get("/me", response_model=Account)
def me(user: CurrentUser) -> Account:
    return Account(id=user.id, email=user.email)
