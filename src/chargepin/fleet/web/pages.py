"""The web app's pages: sign up, sign in, sign out, My chargers, commissioning, Charger Info
(Show PIN), security events. Each validates, calls the fleet's service functions and renders.

Forms are `application/x-www-form-urlencoded` bodies, read here with the standard library; the
one form with a file, the sticker's photo, is multipart (web/uploads.py). A refusal of a
service function becomes the page again with its message and what was typed (never the
password); it is raised as `PageAnswer`, a FleetError, so the request's unit of work
(deps.session) commits or rolls back exactly as for the JSON API.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from chargepin import __version__
from chargepin.core.limits import MAX_EPOCH, serial_problem
from chargepin.core.policy import offers_pin_setup
from chargepin.fleet import accounts, chargers, claims, members, overview, sticker_photo
from chargepin.fleet.access import OWNER, require_member
from chargepin.fleet.api.accounts import Credentials
from chargepin.fleet.api.chargers import ClaimRequest
from chargepin.fleet.api.csms import CommandRequest
from chargepin.fleet.api.members import AcceptRequest, InvitationRequest
from chargepin.fleet.csms import events, outbox, registry
from chargepin.fleet.deps import DB, MAX_ROW_ID, user_for_digest
from chargepin.fleet.errors import FleetError, NotFound, Unauthorized, Unprocessable
from chargepin.fleet.models import User
from chargepin.fleet.security import token_digest
from chargepin.fleet.source_limits import request_address
from chargepin.fleet.times import utc_now
from chargepin.fleet.web import sessions
from chargepin.fleet.web.headers import PREFIX, SecurityHeaders
from chargepin.fleet.web.templating import templates
from chargepin.fleet.web.uploads import PHOTO_BODY_BYTES, PhotoForm, read_photo_form

WEB_APP_VERSION = f"web-{__version__}"
"""What the PIN audit records as the app of a reveal made on these pages. The pages are served
by the fleet itself, so they are never an app too old to show a PIN (no X-App-Version)."""

PAGE_SIZE = 20
"""Entries on one page of the security events and of the PIN audit."""
COMMANDS_SHOWN = 5
"""The newest commands sent to a charger that Charger Info shows with their state."""

PHOTO_PATH = "/commission/photo"
LARGER_BODIES = {PREFIX + PHOTO_PATH: PHOTO_BODY_BYTES}
"""The routes whose bodies may pass the service's 64 KiB (fleet/body_limit.py): the photo."""

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class PageAnswer(FleetError):
    """A refusal answered with a page (or a redirect) instead of JSON; `keep_writes` as the
    refusal it stands for, so a counted wrong password or sticker code stays counted."""

    def __init__(self, response: Response, *, keep_writes: bool = False) -> None:
        super().__init__("answered with a page", keep_writes=keep_writes)
        self.status = response.status_code
        self.response = response


@dataclass(frozen=True)
class Signed:
    """The signed-in visitor: the account and the session cookie's token."""

    user: User
    token: str


def _state(request: Request) -> Any:
    return request.app.state.fleet


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    signed: Signed | None = None,
) -> Response:
    """A page, its forms carrying the CSRF token of the visitor's session (or pre-session)."""
    vault = _state(request).vault
    fresh = None
    if signed is not None:
        bound_to = signed.token
    else:
        bound_to = request.cookies.get(sessions.PRE_SESSION_COOKIE) or ""
        if not bound_to:
            bound_to = fresh = sessions.new_pre_session()
    values = {
        "csrf": sessions.csrf_token(sessions.csrf_key(vault), bound_to),
        "csrf_field": sessions.CSRF_FIELD,
        "user": None if signed is None else signed.user,
        "message": None,
        **context,
    }
    response = templates.TemplateResponse(request, name, values, status_code=status)
    if fresh is not None:
        lifetime = int(_state(request).settings.token_lifetime)
        sessions.set_cookie(request, response, sessions.PRE_SESSION_COOKIE, fresh, lifetime)
    return response


def plain_page(request: Request, status: int, title: str, message: str) -> Response:
    """The error page without a session (no form on it, so no CSRF token): what the service's
    own limits answer before any route runs (fleet/source_limits.py)."""
    context = {"title": title, "message": message, "user": None}
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def refused(
    request: Request,
    error: FleetError,
    name: str = "error.html",
    context: dict[str, Any] | None = None,
    signed: Signed | None = None,
) -> PageAnswer:
    """`error` as the page `name` with its message (and its Retry-After, if any)."""
    page = render(
        request,
        name,
        {"title": "Not possible", **(context or {}), "message": str(error)},
        status=error.status,
        signed=signed,
    )
    retry_after = (error.headers or {}).get("Retry-After")
    if retry_after is not None:
        page.headers["Retry-After"] = retry_after
    return PageAnswer(page, keep_writes=error.keep_writes)


def _to(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


def signed_in(request: Request, db: DB) -> Signed:
    """The visitor's account from the session cookie; else to the sign-in page."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token:
        try:
            user = user_for_digest(db, token_digest(token), utc_now(_state(request).clock))
        except Unauthorized:
            pass
        else:
            return Signed(user, token)
    answer = _to("/signin")
    if token:
        sessions.clear_cookie(request, answer, sessions.SESSION_COOKIE)
    raise PageAnswer(answer)


async def form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first of each name). A body that is not a form has none,
    so it carries no CSRF token and is refused as a forged request."""
    try:
        return sessions.form_fields(request.headers.get("content-type", ""), await request.body())
    except sessions.BadForm:
        raise refused(request, Unprocessable("send the page's form as it is")) from None


Form = Annotated[dict[str, str], Depends(form)]
SignedIn = Annotated[Signed, Depends(signed_in)]

CSRF_REFUSED = (
    "this form was not sent from this site's own page, or it is too old; "
    "reload the page and try again"
)


def _check_csrf(request: Request, fields: dict[str, str], bound_to: str | None) -> None:
    """Every state-changing request: our Origin and the form's token for this session."""
    key = sessions.csrf_key(_state(request).vault)
    if not sessions.post_allowed(request, key, bound_to, fields.get(sessions.CSRF_FIELD)):
        page = render(request, "error.html", {"title": "Form refused", "message": CSRF_REFUSED})
        page.status_code = 403
        raise PageAnswer(page)


def signed_post(request: Request, signed: SignedIn, fields: Form) -> Signed:
    """A signed-in visitor's POST, its CSRF token checked."""
    _check_csrf(request, fields, signed.token)
    return signed


SignedPost = Annotated[Signed, Depends(signed_post)]


def _serial(request: Request, serial: str, signed: Signed) -> str:
    """A label's serial, else the page a stranger gets (nothing looked up)."""
    if serial_problem(serial) is not None:
        missing = NotFound("no such charger on your account; commission it or ask its owner")
        raise refused(request, missing, signed=signed)
    return serial


def _cursor(request: Request, before: str | None, signed: Signed) -> int | None:
    """`?before=` of a paged list: a row id, or the first page when absent."""
    if before is None:
        return None
    return _row_id(request, before, signed, "that page does not exist")


def _row_id(request: Request, text: str, signed: Signed, problem: str) -> int:
    """A row id from a URL (an invitation, a member), else a page saying `problem`."""
    if text.isdigit() and 1 <= int(text) <= MAX_ROW_ID:
        return int(text)
    raise refused(request, Unprocessable(problem), signed=signed)


Refuse = Callable[[FleetError], PageAnswer]
"""How a form's page answers a refusal: the page again with the message, what was typed kept."""
Model = TypeVar("Model", bound=BaseModel)


def on_page(
    request: Request, name: str, context: dict[str, Any], signed: Signed | None = None
) -> Refuse:
    """Refusals answered with the template `name` and its `context` (what was typed)."""
    return lambda error: refused(request, error, name, context, signed)


def on_own_page(request: Request, signed: Signed, page: Callable[[int, str], Response]) -> Refuse:
    """Refusals of what was asked (bad input 422, a rule's 409) answered with `page(status,
    message)`, the form's own page; a refusal of who asked (a stranger's 404, a member's or a
    revoked user's 403) with their page, as every charger page does."""

    def refuse(error: FleetError) -> PageAnswer:
        if error.status not in (409, 422):
            return refused(request, error, signed=signed)
        return PageAnswer(page(error.status, str(error)))

    return refuse


def parsed(
    model: type[Model], values: dict[str, Any], labels: dict[str, str], refuse: Refuse
) -> Model:
    """A form's values as the JSON API's own request `model` takes them (one rule for an
    address, a length, a sticker); else `refuse` with what was wrong, field by field (422)."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise refuse(Unprocessable(_problems(error, labels))) from None


def _problems(error: ValidationError, labels: dict[str, str]) -> str:
    """What was wrong with a form, field by field, in the page's words."""
    parts = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem.get("loc") else ""
        parts.append(f"{labels.get(field, field)}: {problem['msg']}")
    return "; ".join(parts)


# --- pages -------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
def home(_signed: SignedIn) -> Response:
    return _to("/chargers")


@router.get("/signup")
def signup_page(request: Request) -> Response:
    return render(request, "signup.html", {"title": "Sign up", "email": ""})


@router.get("/signin")
def signin_page(request: Request) -> Response:
    return render(request, "signin.html", {"title": "Sign in", "email": ""})


CREDENTIAL_LABELS = {"email": "E-mail", "password": "Password"}


def _credentials(request: Request, fields: dict[str, str], page: str) -> tuple[Credentials, Refuse]:
    """The e-mail and password as the JSON API takes them (the same model: one rule), and how
    the page answers a refusal: the e-mail as typed, never the password."""
    _check_csrf(request, fields, request.cookies.get(sessions.PRE_SESSION_COOKIE))
    email = fields.get("email", "").strip()
    values = {"email": email, "password": fields.get("password", "")}
    refuse = on_page(request, page, {"title": page_title(page), "email": email})
    return parsed(Credentials, values, CREDENTIAL_LABELS, refuse), refuse


def page_title(page: str) -> str:
    return {"signup.html": "Sign up", "signin.html": "Sign in"}.get(page, "chargepin")


def _start_session(request: Request, db: DB, user: User) -> Response:
    """A new login for this browser; the session it held before, if any, ends (a cookie is
    never reused across sign-ins: no session fixation, no forgotten live token)."""
    earlier = request.cookies.get(sessions.SESSION_COOKIE)
    if earlier:
        accounts.end_session(db, token_digest(earlier))
    state = _state(request)
    lifetime = state.settings.token_lifetime
    expires = utc_now(state.clock) + dt.timedelta(seconds=lifetime)
    token = accounts.start_session(db, user, expires)
    answer = _to("/chargers")
    sessions.set_cookie(request, answer, sessions.SESSION_COOKIE, token, int(lifetime))
    sessions.clear_cookie(request, answer, sessions.PRE_SESSION_COOKIE)
    return answer


@router.post("/signup")
def signup(request: Request, db: DB, fields: Form) -> Response:
    """A new account, signed in at once."""
    body, refuse = _credentials(request, fields, "signup.html")
    state = _state(request)
    client = request_address(request)
    try:
        user = accounts.register(
            db, state.passwords, str(body.email), body.password, client, state.clock.now()
        )
    except FleetError as error:
        raise refuse(error) from None
    return _start_session(request, db, user)


@router.post("/signin")
def signin(request: Request, db: DB, fields: Form) -> Response:
    """The account's password (throttled as for the JSON API's /login), then a session."""
    body, refuse = _credentials(request, fields, "signin.html")
    attempt = accounts.Attempt(str(body.email), request_address(request))
    state = _state(request)
    try:
        user = accounts.check_password(
            db, state.passwords, attempt, body.password, state.clock.now()
        )
    except FleetError as error:
        raise refuse(error) from None
    return _start_session(request, db, user)


@router.post("/signout")
def signout(request: Request, db: DB, signed: SignedPost) -> Response:
    """This session ends at once (its login row is deleted), the cookie goes."""
    accounts.end_session(db, token_digest(signed.token))
    answer = _to("/signin")
    sessions.clear_cookie(request, answer, sessions.SESSION_COOKIE)
    return answer


@router.get("/chargers")
def my_chargers(request: Request, db: DB, signed: SignedIn) -> Response:
    state = _state(request)
    listed = overview.my_chargers(
        db, signed.user, utc_now(state.clock), state.settings.ocpp_heartbeat_interval
    )
    return render(
        request, "chargers.html", {"title": "My chargers", "chargers": listed}, signed=signed
    )


@router.get("/commission")
def commission_page(request: Request, signed: SignedIn) -> Response:
    return render(request, "commission.html", {"title": "Add a charger", "code": ""}, signed=signed)


@router.post("/commission")
def commission(request: Request, db: DB, signed: SignedPost, fields: Form) -> Response:
    """The sticker's code typed or pasted: the charger is yours, and its PIN (audited)."""
    return _commission(request, db, signed, fields.get("code", "").strip(), "code")


Photo = Annotated[PhotoForm | None, Depends(read_photo_form)]


@router.post(PHOTO_PATH)
def commission_photo(request: Request, db: DB, signed: SignedIn, upload: Photo) -> Response:
    """The sticker scanned: a photo of it (a phone's browser opens the camera), its QR code read
    on the server (fleet/sticker_photo.py), then exactly the typed code's path. The photo stays
    in memory for this request only."""
    if upload is not None and upload.malformed:
        raise refused(request, Unprocessable("send the page's form as it is"), signed=signed)
    _check_csrf(request, {} if upload is None else upload.fields, signed.token)
    assert upload is not None  # a body that is not a form carries no token: refused above
    context = {"title": "Add a charger", "code": "", "refused": "photo"}
    refuse = on_page(request, "commission.html", context, signed)
    try:
        if upload.too_large:
            raise sticker_photo.too_large()
        text = sticker_photo.sticker_text(upload.photo)
    except FleetError as error:
        raise refuse(error) from None
    return _commission(request, db, signed, text, "photo")


def _commission(request: Request, db: DB, signed: Signed, code: str, field: str) -> Response:
    """A sticker's code, typed or read from a photo: claimed, and Charger Info with the PIN. A
    refusal marks the form `field` ("code" or "photo") as the one that was wrong."""
    context = {"title": "Add a charger", "code": code, "refused": field}
    refuse = on_page(request, "commission.html", context, signed)
    body = parsed(ClaimRequest, {"payload": code}, {"payload": "Sticker code"}, refuse)
    state = _state(request)
    try:
        view = claims.commission(
            db,
            state.vault,
            signed.user,
            request_address(request),
            body.payload,
            WEB_APP_VERSION,
            state.clock.now(),
        )
    except FleetError as error:
        raise refuse(error) from None
    return render(
        request,
        "commissioned.html",
        {"title": "This charger is yours", "info": view},
        signed=signed,
    )


def _info_page(
    request: Request,
    db: DB,
    signed: Signed,
    serial: str,
    before: str | None,
    pin: bool,
    *,
    sent: outbox.CommandView | None = None,
    status: int = 200,
    message: str | None = None,
) -> Response:
    """Charger Info; with the PIN only when Show PIN was pressed (`pin`, a POST), audited. The
    owner also sees the audit, Change PIN and what was sent to the charger over OCPP."""
    serial = _serial(request, serial, signed)
    cursor = _cursor(request, before, signed)
    state = _state(request)
    now = utc_now(state.clock)
    try:
        charger, member = require_member(db, signed.user, serial)
        info = chargers.describe(charger, member.role)
        shown = (
            chargers.reveal(
                db, state.vault, charger, signed.user, WEB_APP_VERSION, state.clock.now()
            )
            if pin
            else None
        )
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    owner = member.role == OWNER
    reveals = chargers.reveals_of(db, charger, PAGE_SIZE, cursor) if owner else None
    enabling = outbox.newest_open(db, charger.id, "enable_pin") if owner else None
    setup = {
        "enabling": enabling,
        "possible": offers_pin_setup(
            info.policy, pin_enabled=info.pin_enabled, is_owner=owner, enabling=bool(enabling)
        ),
        "pop_up": offers_pin_setup(
            info.policy,
            pin_enabled=info.pin_enabled,
            is_owner=owner,
            enabling=bool(enabling),
            dismissed=serial in sessions.not_now(request, state.vault, signed.token),
        ),
    }
    context = {
        "title": f"Charger {info.serial}",
        "info": info,
        "pin": shown,
        "reveals": reveals,
        "next_before": _next(reveals),
        "max_epoch": MAX_EPOCH,
        "sent": sent,
        "setup": setup,
        "message": message,
        "commands": outbox.listed(db, signed.user, serial, COMMANDS_SHOWN, None) if owner else [],
        "connection": (
            registry.connection_of(
                db, signed.user, serial, now, state.settings.ocpp_heartbeat_interval
            )
            if owner
            else None
        ),
    }
    return render(request, "charger.html", context, status=status, signed=signed)


def _next(rows: list[Any] | None) -> int | None:
    """The `before` of the next page, when this one is full (keyset paging, docs/FLEET.md)."""
    return rows[-1].id if rows is not None and len(rows) == PAGE_SIZE else None


@router.get("/chargers/{serial}")
def charger_info(
    request: Request, db: DB, signed: SignedIn, serial: str, before: str | None = None
) -> Response:
    return _info_page(request, db, signed, serial, before, pin=False)


@router.post("/chargers/{serial}/pin")
def show_pin(request: Request, db: DB, signed: SignedPost, serial: str) -> Response:
    """Show PIN: the page again with the PIN; the reveal is audited. A POST, so the PIN is
    never in a URL, a history entry or a cached page."""
    return _info_page(request, db, signed, serial, None, pin=True)


@dataclass(frozen=True)
class OwnerPost:
    """An owner's form on one charger's page: the request, its unit of work, who sent it, the
    charger, and the tasks run once the page is committed."""

    request: Request
    db: Session
    signed: Signed
    serial: str
    background: BackgroundTasks

    def queue(
        self, action: str, args: dict[str, str], label: str, page: Callable[[int, str], Response]
    ) -> outbox.Queued:
        """The command, as the JSON API queues it (the same request model, the same
        `outbox.request`), the charger's connection woken once the page is committed. A
        refusal of what was asked (arguments, `label` naming them: 422; the PIN class: 409)
        is `page(status, message)`; one of who asked (a stranger, a member, a revoked user)
        is their page."""
        request, signed = self.request, self.signed
        refuse = on_own_page(request, signed, page)
        body = parsed(CommandRequest, {"action": action, "args": args}, {"args": label}, refuse)
        state = _state(request)
        now = utc_now(state.clock)
        try:
            queued = outbox.request(
                self.db,
                state.vault,
                signed.user,
                self.serial,
                str(body.action),
                body.args,
                now,
                state.settings.outbox_max_open,
            )
        except FleetError as error:
            raise refuse(error) from None
        self.background.add_task(request.app.state.csms.wake, queued.charger_id)
        return queued


def _info_again(
    request: Request, db: DB, signed: Signed, serial: str
) -> Callable[[int, str], Response]:
    """Charger Info again with a refusal's status and message (Change PIN, Set up)."""
    return lambda status, message: _info_page(
        request, db, signed, serial, None, False, status=status, message=message
    )


@router.post("/chargers/{serial}/change-pin")
def change_pin(
    request: Request,
    db: DB,
    signed: SignedPost,
    fields: Form,
    serial: str,
    background: BackgroundTasks,
) -> Response:
    """Change PIN (owner; firmware 6.11 or higher): the `change_pin` command the JSON API
    queues, sent to the charger over OCPP. A refused PIN is said with the weak-PIN rule's
    reason and not typed back into the form (docs/APP.md)."""
    serial = _serial(request, serial, signed)
    pin = {"pin": fields.get("pin", "")}
    again = _info_again(request, db, signed, serial)
    queued = OwnerPost(request, db, signed, serial, background).queue(
        "change_pin", pin, "New PIN", again
    )
    return _info_page(request, db, signed, serial, None, False, sent=queued.command)


@router.post("/chargers/{serial}/pin-setup")
def set_up_pin(
    request: Request, db: DB, signed: SignedPost, serial: str, background: BackgroundTasks
) -> Response:
    """ "Set up" in the passcode pop-up (owner; an optional-PIN charger with the PIN off): the
    `enable_pin` command the JSON API queues, sent to the charger over OCPP; Charger Info then
    says the connection will be interrupted and shows the command's state."""
    serial = _serial(request, serial, signed)
    again = _info_again(request, db, signed, serial)
    OwnerPost(request, db, signed, serial, background).queue("enable_pin", {}, "Set up", again)
    return _info_page(request, db, signed, serial, None, False)


@router.post("/chargers/{serial}/pin-setup/not-now")
def not_now(request: Request, db: DB, signed: SignedPost, serial: str) -> Response:
    """ "Not now" in the passcode pop-up: this session stops offering it for this charger
    (a cookie bound to the session, docs/APP.md); Set up stays on Charger Info."""
    serial = _serial(request, serial, signed)
    try:
        require_member(db, signed.user, serial)
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    answer = _to(f"/chargers/{serial}")
    sessions.remember_not_now(request, answer, _state(request).vault, signed.token, serial)
    return answer


@router.get("/chargers/{serial}/events")
def security_events(
    request: Request, db: DB, signed: SignedIn, serial: str, before: str | None = None
) -> Response:
    """The charger's security events (over OCPP), newest first, in the fleet's words."""
    serial = _serial(request, serial, signed)
    cursor = _cursor(request, before, signed)
    try:
        listed = events.listed(db, signed.user, serial, PAGE_SIZE, cursor)
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    context = {
        "title": f"Security events of {serial}",
        "serial": serial,
        "events": listed,
        "next_before": _next(listed),
    }
    return render(request, "events.html", context, signed=signed)


def _people_page(
    request: Request,
    db: DB,
    signed: Signed,
    serial: str,
    *,
    invitation: members.NewInvitation | None = None,
    invited: str = "",
    revoked: members.Revoked | None = None,
    removing: outbox.CommandView | None = None,
    status: int = 200,
    message: str | None = None,
) -> Response:
    """People (owner only): invite by e-mail, the pending invitations, the members, and the
    paired phones (the bonds the charger vouched for) with the state of their removal."""
    now = utc_now(_state(request).clock)
    try:
        pending = members.open_invitations(db, signed.user, serial, now)
        listed = members.members(db, signed.user, serial)
        sent = outbox.listed(db, signed.user, serial, PAGE_SIZE, None)
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    removals: dict[str, outbox.CommandView] = {}
    for command in reversed(sent):  # oldest first: the newest removal of an address wins
        if command.action == "remove_phone" and "address" in command.args:
            removals[command.args["address"].upper()] = command
    phones = [(phone, m, removals.get(phone.upper())) for m in listed for phone in m.phones]
    context = {
        "title": f"People of {serial}",
        "serial": serial,
        "invitation": invitation,
        "invited": invited,
        "pending": pending,
        "members": [m for m in listed if not m.revoked],
        "revoked": revoked,
        "phones": phones,
        "removing": removing,
        "message": message,
    }
    return render(request, "people.html", context, status=status, signed=signed)


def _people_again(
    request: Request, db: DB, signed: Signed, serial: str, invited: str = ""
) -> Callable[[int, str], Response]:
    """People again with a refusal's status and message (and the address as typed)."""
    return lambda status, message: _people_page(
        request, db, signed, serial, invited=invited, status=status, message=message
    )


@router.get("/chargers/{serial}/people")
def people(request: Request, db: DB, signed: SignedIn, serial: str) -> Response:
    serial = _serial(request, serial, signed)
    return _people_page(request, db, signed, serial)


@router.post("/chargers/{serial}/invitations")
def invite(request: Request, db: DB, signed: SignedPost, fields: Form, serial: str) -> Response:
    """A one-time code for an e-mail address, shown once for the owner to pass on."""
    serial = _serial(request, serial, signed)
    email = fields.get("email", "").strip()
    # 409: already a member; said on People with the address as typed, as a bad address is.
    refuse = on_own_page(request, signed, _people_again(request, db, signed, serial, email))
    body = parsed(InvitationRequest, {"email": email}, CREDENTIAL_LABELS, refuse)
    state = _state(request)
    try:
        created = members.invite(
            db,
            signed.user,
            serial,
            str(body.email),
            utc_now(state.clock),
            state.settings.invitation_lifetime,
        )
    except FleetError as error:
        raise refuse(error) from None
    return _people_page(request, db, signed, serial, invitation=created)


@router.post("/chargers/{serial}/invitations/{invitation_id}/withdraw")
def withdraw(
    request: Request, db: DB, signed: SignedPost, serial: str, invitation_id: str
) -> Response:
    """Withdraw a pending invitation: its code stops working at once."""
    serial = _serial(request, serial, signed)
    number = _row_id(request, invitation_id, signed, "no such invitation")
    try:
        members.withdraw(db, signed.user, serial, number, utc_now(_state(request).clock))
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    return _to(f"/chargers/{serial}/people")


@router.post("/chargers/{serial}/members/{user_id}/revoke")
def revoke(
    request: Request,
    db: DB,
    signed: SignedPost,
    fields: Form,
    serial: str,
    user_id: str,
    background: BackgroundTasks,
) -> Response:
    """Revoke a member: their phones are removed from the charger over OCPP (and the charger
    re-keyed when asked), as with the JSON API; the page says what became of them."""
    serial = _serial(request, serial, signed)
    number = _row_id(request, user_id, signed, "no such member")
    try:
        done = members.revoke(
            db,
            signed.user,
            serial,
            number,
            utc_now(_state(request).clock),
            rekey=fields.get("rekey") == "yes",
        )
    except FleetError as error:
        raise refused(request, error, signed=signed) from None
    if done.commands:
        background.add_task(request.app.state.csms.wake, done.charger_id)
    return _people_page(request, db, signed, serial, revoked=done)


@router.post("/chargers/{serial}/phones/remove")
def remove_phone(
    request: Request,
    db: DB,
    signed: SignedPost,
    fields: Form,
    serial: str,
    background: BackgroundTasks,
) -> Response:
    """Remove a paired phone: the `remove_phone` command the JSON API queues (and revoking a
    member queues), sent to the charger over OCPP. The address travels in the form, not the
    URL; once the charger's receipt is in, the fleet forgets the bond (fleet/csms/outbox.py)."""
    serial = _serial(request, serial, signed)
    address = {"address": fields.get("address", "").strip()}
    again = _people_again(request, db, signed, serial)
    queued = OwnerPost(request, db, signed, serial, background).queue(
        "remove_phone", address, "Phone address", again
    )
    return _people_page(request, db, signed, serial, removing=queued.command)


@router.get("/invitations/accept")
def accept_page(request: Request, signed: SignedIn) -> Response:
    context = {"title": "Accept an invitation", "code": ""}
    return render(request, "accept.html", context, signed=signed)


@router.post("/invitations/accept")
def accept(request: Request, db: DB, signed: SignedPost, fields: Form) -> Response:
    """The code the owner passed on, typed or pasted: the charger is on your account."""
    code = fields.get("code", "").strip()
    refuse = on_page(
        request, "accept.html", {"title": "Accept an invitation", "code": code}, signed
    )
    body = parsed(AcceptRequest, {"code": code}, {"code": "Invitation code"}, refuse)
    try:
        accepted = members.accept(db, signed.user, body.code, utc_now(_state(request).clock))
    except FleetError as error:
        raise refuse(error) from None
    return _to(f"/chargers/{accepted.serial}")


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and their headers on the fleet app."""

    async def page_answer(_request: Request, error: Exception) -> Response:
        assert isinstance(error, PageAnswer)
        return error.response

    app.add_exception_handler(PageAnswer, page_answer)
    app.include_router(router)
    app.mount(
        PREFIX + "/static",
        StaticFiles(packages=[("chargepin.fleet.web", "static")]),
        name="app-static",
    )
    app.add_middleware(SecurityHeaders)
