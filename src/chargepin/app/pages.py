"""The radio app's Bluetooth screens: Nearby, pairing with the PIN shown, troubleshooting after a
wrong PIN, the lockout countdown, the controls, "update the app".

Each screen asks the fleet's JSON API, as the signed-in user (the session cookie's login token
as a Bearer token, with this app's X-App-Version), whether the user may use the charger, then
drives the phone through the phone library (phone/troubleshooting.py, phone/client.py): no
rule of the charger's, the fleet's or the PIN's lives here, only the web's own (the session,
CSRF, headers: fleet/web/sessions.py and headers.py, shared with the fleet's pages).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from chargepin.app.radio import Radio
from chargepin.core.errors import ChargepinError
from chargepin.core.limits import serial_problem
from chargepin.core.pin import Pin
from chargepin.core.policy import offers_pin_setup
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    ChargerStatus,
    ProtocolError,
    checked_current_limit,
)
from chargepin.core.tickets import Action
from chargepin.fleet.web import sessions
from chargepin.fleet.web.headers import PREFIX
from chargepin.fleet.web.templating import templates
from chargepin.phone import owner_actions, troubleshooting
from chargepin.phone.client import ChargerLink
from chargepin.phone.errors import ChargerLocked, ChargerNotFound, WrongPin
from chargepin.phone.fleet_client import FleetClient, FleetRefused, FleetUnreachable

NEARBY = PREFIX + "/nearby"
NOT_YOURS = "no such charger on your account; commission it or ask its owner"
CSRF_REFUSED = (
    "this form was not sent from this site's own page, or it is too old; "
    "reload the page and try again"
)

router = APIRouter(prefix=NEARBY, include_in_schema=False)


@dataclass(frozen=True)
class AppState:
    """What the screens share: the phone, the fleet's URL and how to reach it, the CSRF key."""

    radio: Radio
    fleet_url: str
    csrf_key: bytes
    app_version: str
    fleet_transport: httpx.AsyncBaseTransport | None = None
    not_now: set[tuple[str, str]] = field(default_factory=set)
    """(session, serial) pairs whose owner answered "Not now" to the passcode pop-up: for the
    session (and this app's run), as the fleet's pages keep it for theirs."""


class Screen(Exception):
    """A screen (or a redirect) answered instead of the one asked for."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered with another screen")
        self.response = response


@dataclass(frozen=True)
class Visitor:
    """The signed-in user: their session token, the fleet as them, their chargers."""

    token: str
    fleet: FleetClient
    chargers: dict[str, dict[str, Any]]


def _app(request: Request) -> AppState:
    state: AppState = request.app.state.radio_app
    return state


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    visitor: Visitor | None,
    status: int = 200,
) -> Response:
    """A screen with the fleet's base template; its forms carry this session's CSRF token."""
    key = _app(request).csrf_key
    values = {
        "csrf": sessions.csrf_token(key, visitor.token) if visitor else "",
        "csrf_field": sessions.CSRF_FIELD,
        "user": visitor is not None,
        "message": None,
        **context,
    }
    return templates.TemplateResponse(request, name, values, status_code=status)


def _to(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


async def signed_in(request: Request) -> AsyncIterator[Visitor]:
    """The session cookie's user, as the fleet knows them (else to the fleet's sign-in page)."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        raise Screen(_to("/signin"))
    state = _app(request)
    fleet = FleetClient(
        state.fleet_url, token, transport=state.fleet_transport, app_version=state.app_version
    )
    try:
        try:
            listed = await fleet.chargers()
        except FleetRefused as error:
            if error.status == 401:
                raise Screen(_to("/signin")) from None
            raise Screen(failure(request, None, error)) from None
        except FleetUnreachable as error:
            raise Screen(failure(request, None, error)) from None
        yield Visitor(token, fleet, {str(c["serial"]): c for c in listed})
    finally:
        await fleet.close()


SignedIn = Annotated[Visitor, Depends(signed_in)]


async def signed_post(request: Request, visitor: SignedIn) -> tuple[Visitor, dict[str, str]]:
    """A signed-in user's form, its Origin and CSRF token checked (fleet/web/sessions.py)."""
    try:
        fields = sessions.form_fields(request.headers.get("content-type", ""), await request.body())
    except sessions.BadForm:
        fields = {}
    sent = fields.get(sessions.CSRF_FIELD)
    if not sessions.post_allowed(request, _app(request).csrf_key, visitor.token, sent):
        page = render(
            request,
            "error.html",
            {"title": "Form refused", "message": CSRF_REFUSED},
            visitor=visitor,
            status=403,
        )
        raise Screen(page)
    return visitor, fields


SignedPost = Annotated[tuple[Visitor, dict[str, str]], Depends(signed_post)]


def _mine(request: Request, visitor: Visitor, serial: str) -> str:
    """A serial on the user's account, else the page a stranger gets (nothing on the air)."""
    if serial_problem(serial) is not None or serial not in visitor.chargers:
        context = {"title": "Not possible", "message": NOT_YOURS}
        raise Screen(render(request, "error.html", context, visitor=visitor, status=404))
    return serial


def failure(request: Request, visitor: Visitor | None, error: ChargepinError) -> Response:
    """What went wrong, as the screen for it: "update the app", the sign-in page, or the error
    in the phone library's or the fleet's words with what to do."""
    if isinstance(error, FleetRefused):
        if error.status == 426:
            context = {"title": "Update the app", "message": None, "detail": error.detail}
            return render(request, "radio/update.html", context, visitor=visitor, status=426)
        if error.status == 401:
            return _to("/signin")
        status = error.status if 400 <= error.status < 500 else 502
        message = error.detail
    elif isinstance(error, FleetUnreachable):
        status, message = 502, str(error)
    elif isinstance(error, ChargerNotFound):
        status, message = 404, str(error)
    else:
        status, message = 409, str(error)
    context = {"title": "Not possible", "message": message}
    return render(request, "radio/failed.html", context, visitor=visitor, status=status)


RETRY_FLOOR = 3
"""The shortest countdown, in seconds (a charger refusing with LOCKED may not say how long)."""


def _locked(
    request: Request, visitor: Visitor, serial: str, seconds: float, *, wrong: bool
) -> Response:
    """The lockout screen: "unavailable, try again in m:ss", counting down (static/countdown.js),
    retrying by itself at the end; without script, the Try again button does the same. A lock
    whose end the charger did not say still waits `RETRY_FLOOR` seconds: a retry refused again
    never makes the page hammer the charger."""
    whole = max(int(seconds + 0.999), RETRY_FLOOR)
    context = {
        "title": f"Charger {serial} is unavailable",
        "serial": serial,
        "seconds": whole,
        "clock": f"{whole // 60}:{whole % 60:02d}",
        "wrong": wrong,
    }
    return render(request, "radio/locked.html", context, visitor=visitor)


def _settled(request: Request, visitor: Visitor, serial: str, error: ChargepinError) -> Response:
    """A refused connection or command: the lockout countdown, or `failure`'s screen."""
    if isinstance(error, ChargerLocked):
        return _locked(request, visitor, serial, error.retry_after, wrong=False)
    return failure(request, visitor, error)


# --- screens -----------------------------------------------------------------------------------


@router.get("")
async def nearby(request: Request, visitor: SignedIn) -> Response:
    """The chargers in range: serial, model when it is on your account, PIN on or off, locked."""
    radio = _app(request).radio
    try:
        async with radio.lock:
            found = await radio.scan()
            bonded = {charger.address: await radio.bonded(charger) for charger in found}
    except ChargepinError as error:
        return failure(request, visitor, error)
    rows = [
        {
            "found": charger,
            "mine": visitor.chargers.get(charger.serial),
            "bonded": bonded[charger.address],
        }
        for charger in found
    ]
    connected = [serial for serial in radio.open_serials() if serial in visitor.chargers]
    context = {"title": "Nearby", "rows": rows, "connected": connected}
    return render(request, "radio/nearby.html", context, visitor=visitor)


@router.post("/{serial}/connect")
async def connect(request: Request, posted: SignedPost, serial: str) -> Response:
    """Bonded, or a charger whose PIN is off: straight to the controls. Otherwise the pairing
    screen with the PIN to type (the fleet's audited reveal); during a lockout, the countdown."""
    visitor, _fields = posted
    serial = _mine(request, visitor, serial)
    radio = _app(request).radio
    try:
        async with radio.lock:
            if radio.link(serial) is not None:
                return _to(f"/nearby/{serial}")
            charger = await radio.phone.find(serial)
            if charger.pin_enabled and not await radio.bonded(charger):
                if charger.locked:
                    info = await radio.phone.read_info(serial)
                    if info.locked:
                        return _locked(request, visitor, serial, info.retry_after, wrong=False)
                return await _pairing(request, visitor, serial)
            connected = await troubleshooting.attempt(radio.phone, visitor.fleet, serial)
            await radio.keep(serial, connected.link)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)
    return _to(f"/nearby/{serial}")


async def _pairing(
    request: Request, visitor: Visitor, serial: str, *, status: int = 200, message: str = ""
) -> Response:
    """The pairing screen: the PIN to type, from Charger Info (each fetch is the fleet's
    audited reveal), and a field to type it in. Never the PIN the user typed."""
    info = await visitor.fleet.charger_info(serial)
    context = {
        "title": f"Pair with {serial}",
        "serial": serial,
        "pin": info.pin,
        "info_message": info.message,
        "message": message or None,
    }
    return render(request, "radio/pair.html", context, visitor=visitor, status=status)


@router.post("/{serial}/pair")
async def pair(request: Request, posted: SignedPost, serial: str) -> Response:
    """The PIN as typed, typed into the charger once it proved it is the charger: the controls;
    a wrong PIN: troubleshooting (or the countdown when it started a lockout)."""
    visitor, fields = posted
    serial = _mine(request, visitor, serial)
    try:
        typed = Pin.parse(fields.get("pin", ""))
    except ChargepinError as error:
        try:
            return await _pairing(request, visitor, serial, status=422, message=str(error))
        except ChargepinError as fetched:
            return failure(request, visitor, fetched)
    radio = _app(request).radio
    try:
        async with radio.lock:
            connected = await troubleshooting.attempt(
                radio.phone, visitor.fleet, serial, typed_pin=typed
            )
            await radio.keep(serial, connected.link)
    except WrongPin as wrong:
        if wrong.locked_for > 0:
            return _locked(request, visitor, serial, wrong.locked_for, wrong=True)
        return await _troubleshooting(request, visitor, serial)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)
    return _to(f"/nearby/{serial}")


async def _troubleshooting(request: Request, visitor: Visitor, serial: str) -> Response:
    """ "That PIN did not work; the charger's PIN is NNNNNN" (Charger Info once the charger's
    attested state reached the fleet: a hardened charger moved on) and one Try again."""
    try:
        info = await visitor.fleet.charger_info(serial)
    except ChargepinError as error:
        return failure(request, visitor, error)
    context = {"title": "That PIN did not work", "serial": serial, "pin": info.pin}
    return render(request, "radio/troubleshooting.html", context, visitor=visitor)


@router.post("/{serial}/retry")
async def retry(request: Request, posted: SignedPost, serial: str) -> Response:
    """Try again: the fleet's PIN for the epoch the charger proves now, admitted past a lock
    (a member's phone is: DECISIONS.md), as the phone library's troubleshooting path."""
    visitor, _fields = posted
    serial = _mine(request, visitor, serial)
    radio = _app(request).radio
    try:
        async with radio.lock:
            connected = await troubleshooting.attempt(
                radio.phone, visitor.fleet, serial, admitted=True
            )
            await radio.keep(serial, connected.link)
    except WrongPin:
        return await _troubleshooting(request, visitor, serial)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)
    return _to(f"/nearby/{serial}")


async def _controls(
    request: Request,
    visitor: Visitor,
    serial: str,
    link: ChargerLink,
    *,
    status: ChargerStatus | None = None,
    code: int = 200,
    message: str | None = None,
    amps: str = "",
) -> Response:
    shown = status if status is not None else await link.status()
    offer = await _offers_pin_setup(request, visitor, serial, link)
    context = {
        "offer": offer,
        "title": f"Charger {serial}",
        "serial": serial,
        "status": shown,
        "mine": visitor.chargers[serial],
        "paired_now": link.paired_now,
        "message": message,
        "amps": amps or str(shown.current_limit),
        "min_amps": MIN_CURRENT_A,
        "max_amps": MAX_CURRENT_A,
    }
    return render(request, "radio/controls.html", context, visitor=visitor, status=code)


def _session(visitor: Visitor) -> str:
    return hashlib.sha256(visitor.token.encode()).hexdigest()


async def _offers_pin_setup(
    request: Request, visitor: Visitor, serial: str, link: ChargerLink
) -> bool:
    """The passcode pop-up, by the rule the fleet's Charger Info asks too (core.policy's
    `offers_pin_setup`), with the PIN state the charger shows on this link and the PIN class
    the fleet decided."""
    owner = visitor.chargers[serial].get("role") == "owner"
    if not owner or link.info.pin_enabled:
        # Charger Info of a charger whose PIN is on is an audited reveal: it is not fetched
        # only to hear the rule say no (it does, whatever the rest, for these two).
        return False
    info = await visitor.fleet.charger_info(serial)
    if info.policy is None:
        return False
    return offers_pin_setup(
        info.policy,
        pin_enabled=link.info.pin_enabled,
        is_owner=owner,
        enabling=await visitor.fleet.enabling(serial),
        dismissed=(_session(visitor), serial) in _app(request).not_now,
    )


MAX_TYPED = 12
"""What of a typed current limit is kept for the page (a number is at most 2 digits)."""


def _amperes(typed: str) -> int:
    """The typed current limit as a number, else ProtocolError (what to type is said)."""
    if not (typed.isascii() and typed.isdigit() and len(typed) <= 3):
        raise ProtocolError(
            f"{typed!r} is not a whole number of amperes ({MIN_CURRENT_A}-{MAX_CURRENT_A} A)"
        )
    return int(typed)


def _open_link(
    request: Request,
    visitor: Visitor,
    serial: str,
    *,
    status: int = 200,
    problem: str | None = None,
) -> ChargerLink:
    """The phone's open link to `serial`, else the screen offering to connect (with what was
    wrong with the form, if anything)."""
    link = _app(request).radio.link(serial)
    if link is None:
        context = {"title": f"Charger {serial}", "serial": serial, "message": problem}
        page = render(request, "radio/not_connected.html", context, visitor=visitor, status=status)
        raise Screen(page)
    return link


@router.get("/{serial}")
async def controls(request: Request, visitor: SignedIn, serial: str) -> Response:
    """The controls of a connected charger: status, start/stop charging, current limit."""
    serial = _mine(request, visitor, serial)
    radio = _app(request).radio
    try:
        async with radio.lock:
            link = _open_link(request, visitor, serial)
            return await _controls(request, visitor, serial, link)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)


@router.post("/{serial}/not-now")
async def not_now(request: Request, posted: SignedPost, serial: str) -> Response:
    """ "Not now" to the passcode pop-up: not offered again in this session."""
    visitor, _fields = posted
    serial = _mine(request, visitor, serial)
    _app(request).not_now.add((_session(visitor), serial))
    return _to(f"/nearby/{serial}")


@router.post("/{serial}/enable-pin")
async def enable_pin(request: Request, posted: SignedPost, serial: str) -> Response:
    """Set up the passcode: the owner's enable_pin ticket applied over Bluetooth (the phone
    library's owner action, its receipt handed to the fleet). The charger then interrupts the
    connection and forgets the bonds made without a PIN: this phone forgets its own too, so the
    next Connect asks for the PIN (the pairing screen)."""
    visitor, _fields = posted
    serial = _mine(request, visitor, serial)
    radio = _app(request).radio
    try:
        async with radio.lock:
            link = _open_link(request, visitor, serial)
            await owner_actions.apply(link, visitor.fleet, Action.ENABLE_PIN)
            await link.wait_closed(INTERRUPTION_WAIT)
            await radio.drop(serial)
            await radio.phone.forget(link.address)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)
    context = {"title": "The PIN is on", "serial": serial}
    return render(request, "radio/pin_enabled.html", context, visitor=visitor)


INTERRUPTION_WAIT = 5.0
"""Seconds the app waits for the charger to end the link after enabling the PIN."""


@router.post("/{serial}/{command}")
async def control(request: Request, posted: SignedPost, serial: str, command: str) -> Response:
    """Start, stop, the current limit (checked as the phone library checks it, before anything
    goes on the air), disconnect."""
    visitor, fields = posted
    serial = _mine(request, visitor, serial)
    radio = _app(request).radio
    if command not in ("start", "stop", "limit", "disconnect"):
        context = {"title": "Not possible", "message": "no such action; go back and try again"}
        return render(request, "error.html", context, visitor=visitor, status=404)
    typed = fields.get("amps", "").strip()[:MAX_TYPED]
    problem = None
    if command == "limit":
        try:
            amps = checked_current_limit(_amperes(typed))
        except ProtocolError as error:
            problem = f"Current limit: {error}; type a value in that range"
    try:
        async with radio.lock:
            if command == "disconnect":
                await radio.drop(serial)
                return _to("/nearby")
            link = _open_link(
                request, visitor, serial, status=422 if problem else 200, problem=problem
            )
            if problem is not None:
                return await _controls(
                    request, visitor, serial, link, code=422, message=problem, amps=typed
                )
            if command == "limit":
                status = await link.set_current_limit(amps)
            elif command == "start":
                status = await link.start_charging()
            else:
                status = await link.stop_charging()
            return await _controls(request, visitor, serial, link, status=status)
    except ChargepinError as error:
        return _settled(request, visitor, serial, error)
