"""Invitations, members and phone-reported events of a charger (service: fleet/members.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from pydantic import BaseModel, EmailStr, Field

from chargepin.core.bond_statement import STATEMENT_SIZE
from chargepin.core.events import PhoneReport
from chargepin.fleet import members as service
from chargepin.fleet.api.refusals import refused
from chargepin.fleet.deps import DB, BeforeCursor, CurrentUser, PageLimit, SerialPath
from chargepin.fleet.times import utc_now

router = APIRouter(tags=["members"])

UserIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
InvitationIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


class InvitationRequest(BaseModel):
    email: EmailStr


class InvitationCode(BaseModel):
    """Shown to the owner once: the fleet sends no e-mail, the owner passes the code on."""

    id: int
    code: str
    expires_at: dt.datetime


class InvitationOut(BaseModel):
    """An invitation without its code (the fleet keeps only the code's hash)."""

    id: int
    email: str
    created_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None


class AcceptRequest(BaseModel):
    code: str = Field(min_length=1, max_length=100)


class MembershipOut(BaseModel):
    serial: str
    role: str


class Member(BaseModel):
    user_id: int
    email: str
    role: str
    since: dt.datetime
    revoked: bool
    revoked_at: dt.datetime | None
    phones: list[str] = Field(
        description="identity addresses the charger vouched for as this member's phones"
    )


class RevokedMember(BaseModel):
    user_id: int
    email: str
    revoked_at: dt.datetime
    phones_to_remove: list[str] = Field(
        description="submit a remove_phone ticket for each: the charger still knows these phones"
    )
    pins_seen: int = Field(
        description="how often the member saw a PIN of the charger's current generation"
    )
    rekey_offered: bool = Field(
        description="the member knows PINs of the charger's sequence: offer the owner a rekey "
        "ticket (a PIN sequence nobody has seen; Charger Info then shows the new PIN)"
    )
    commands: list[int] = Field(
        default_factory=list,
        description="the commands queued for the charger over OCPP (remove_phone for each "
        "phone, the re-key when asked); follow them at GET /chargers/{serial}/commands",
    )


class BondStatementRelay(BaseModel):
    """The charger's bond statement as the phone read it after pairing (docs/PROTOCOL.md)."""

    statement: str = Field(
        pattern=f"^[0-9a-fA-F]{{{2 * STATEMENT_SIZE}}}$",
        description=f"the bond characteristic's {STATEMENT_SIZE} octets, in hexadecimal",
    )


class PhoneOut(BaseModel):
    address: str
    sequence: int = Field(description="the charger's pairing count when it made the statement")
    user_id: int
    attested_at: dt.datetime


class SecurityEventReport(BaseModel):
    kind: PhoneReport
    detail: str = Field(default="", max_length=500)


class SecurityEventOut(BaseModel):
    id: int
    kind: str
    detail: str
    user_id: int
    at: dt.datetime


def _now(request: Request) -> dt.datetime:
    return utc_now(request.app.state.fleet.clock)


@router.post(
    "/chargers/{serial}/invitations",
    status_code=201,
    response_model=InvitationCode,
    responses=refused(409),
)
def invite(
    serial: SerialPath, body: InvitationRequest, user: CurrentUser, db: DB, request: Request
) -> InvitationCode:
    """Invite an e-mail address (owner only); returns a one-time code for the owner to pass on.

    No e-mail is sent. The code works once, for the account with that address, until it expires.
    """
    created = service.invite(
        db,
        user,
        serial,
        str(body.email),
        _now(request),
        request.app.state.fleet.settings.invitation_lifetime,
    )
    return InvitationCode(id=created.id, code=created.code, expires_at=created.expires_at)


@router.get("/chargers/{serial}/invitations", response_model=list[InvitationOut])
def list_invitations(
    serial: SerialPath, user: CurrentUser, db: DB, request: Request
) -> list[InvitationOut]:
    """The invitations that can still be accepted (owner only)."""
    return [
        InvitationOut(**vars(i)) for i in service.open_invitations(db, user, serial, _now(request))
    ]


@router.delete(
    "/chargers/{serial}/invitations/{invitation_id}",
    response_model=InvitationOut,
    responses=refused(409),
)
def withdraw_invitation(
    serial: SerialPath,
    invitation_id: InvitationIdPath,
    user: CurrentUser,
    db: DB,
    request: Request,
) -> InvitationOut:
    """Withdraw an invitation not yet accepted (owner only): its code stops working at once."""
    return InvitationOut(**vars(service.withdraw(db, user, serial, invitation_id, _now(request))))


@router.post(
    "/invitations/accept", response_model=MembershipOut, responses=refused(403, 404, 409, 410)
)
def accept(body: AcceptRequest, user: CurrentUser, db: DB, request: Request) -> MembershipOut:
    """Accept an invitation with the invited account; the caller becomes a user of the charger."""
    accepted = service.accept(db, user, body.code, _now(request))
    return MembershipOut(serial=accepted.serial, role=accepted.role)


@router.get("/chargers/{serial}/members", response_model=list[Member])
def list_members(serial: SerialPath, user: CurrentUser, db: DB) -> list[Member]:
    """The charger's members, revoked ones included (owner only)."""
    return [
        Member(
            user_id=m.user_id,
            email=m.email,
            role=m.role,
            since=m.since,
            revoked=m.revoked,
            revoked_at=m.revoked_at,
            phones=list(m.phones),
        )
        for m in service.members(db, user, serial)
    ]


@router.delete(
    "/chargers/{serial}/members/{user_id}", response_model=RevokedMember, responses=refused(409)
)
def revoke(
    serial: SerialPath,
    user_id: UserIdPath,
    user: CurrentUser,
    db: DB,
    request: Request,
    background: BackgroundTasks,
    rekey: Annotated[
        bool, Query(description="also re-key the charger (a PIN sequence nobody has seen)")
    ] = False,
) -> RevokedMember:
    """Revoke a member (owner only). The member's phones are removed from the charger over
    OCPP (at once if it is connected, else when it connects), and re-keyed with `rekey=true`;
    the answer lists the phones and offers a re-key when the member saw PINs."""
    revoked = service.revoke(db, user, serial, user_id, _now(request), rekey=rekey)
    if revoked.commands:
        # After the response's commit (the unit of work), so the delivery finds the rows.
        background.add_task(request.app.state.csms.wake, revoked.charger_id)
    return RevokedMember(
        user_id=revoked.user_id,
        email=revoked.email,
        revoked_at=revoked.revoked_at,
        phones_to_remove=list(revoked.phones),
        pins_seen=revoked.pins_seen,
        rekey_offered=revoked.rekey_offered,
        commands=list(revoked.commands),
    )


@router.post("/chargers/{serial}/phones", response_model=PhoneOut, responses=refused(409))
def relay_bond(
    serial: SerialPath, body: BondStatementRelay, user: CurrentUser, db: DB, request: Request
) -> PhoneOut:
    """Relay the charger's bond statement (member): its address becomes the caller's phone.

    Only a statement the charger made counts (422 otherwise); an address the charger vouched
    for more recently for another account stays theirs (409).
    """
    fleet = request.app.state.fleet
    phone = service.relay_bond(
        db, fleet.vault, user, serial, bytes.fromhex(body.statement), _now(request)
    )
    return PhoneOut(**vars(phone))


@router.post("/chargers/{serial}/events", status_code=201, response_model=SecurityEventOut)
def report_event(
    serial: SerialPath, body: SecurityEventReport, user: CurrentUser, db: DB, request: Request
) -> SecurityEventOut:
    """Report what the phone saw (member). phone_address is refused: relay the bond statement."""
    event = service.report_event(db, user, serial, body.kind, body.detail, _now(request))
    return SecurityEventOut(**vars(event))


@router.get("/chargers/{serial}/events", response_model=list[SecurityEventOut])
def list_events(
    serial: SerialPath,
    user: CurrentUser,
    db: DB,
    limit: PageLimit = 100,
    before: BeforeCursor = None,
) -> list[SecurityEventOut]:
    """The charger's reported events, newest first (owner only).

    Paged: pass the last entry's `id` as `before` for the next page; a page shorter than
    `limit` is the last.
    """
    events = service.events(db, user, serial, limit, before)
    return [SecurityEventOut(**vars(e)) for e in events]
