"""`chargepin bench app`: what each page of the web app weighs and costs the server, measured on
a fleet database of a million chargers (issue 11's bar: under 100 KB transferred per page with
its stylesheet, icon and scripts; under 20 ms of server time at the median).

1. The database. `fleet.factory.provision` makes N chargers (1,000,000 by default; rows only) in
   one transaction, then `seed` gives the measured accounts realistic data through the fleet's
   own service functions: an owner of `MANY` chargers (claimed by their stickers, half of them
   connected over OCPP, some with a running lockout, a few events each), an owner of a few
   (members with paired phones, invitations, hundreds of audited reveals, commands, and one
   charger with thousands of security events so paging is exercised), an invited user, a
   stranger, a revoked member, an installer who commissions and an owner whose members are
   revoked one per request.
2. The pages. Every entry of `PAGES` (GETs, the POSTs that answer with a page: Show PIN,
   commissioning, Change PIN, invite, revoke, remove a phone, and the refusals a careless or
   hostile client gets) is requested `requests` times through the real app (`create_app` on
   that database) in this process, over `httpx.ASGITransport`, each request followed by one to
   a bare FastAPI route serving a 3 KB HTML page (`bare_app`), so both see the same moment of
   the machine.
   - Server time: a timer around the ASGI call (`TimedApp`): from the moment the app is called
     to the moment it has sent its last byte, with the middleware, routing, dependencies,
     thread-pool hop, queries and template; without the client (httpx) and without uvicorn's
     HTTP parsing, which cost every page and the bare route the same. In-process rather than a
     Server-Timing header from a middleware, because a middleware would not see the work done
     outside it (the other middleware, the exception handlers that render a refusal). The
     process's CPU time during the call is reported next to it: on a shared machine the wall
     time also holds the waits for a core.
   - Queries: the SQL statements the request executed (an engine event), so a page that asks
     the database once per charger shows it.
   - Weight: what a browser downloads on a first visit, nothing cached: the page's status line,
     headers (with the two uvicorn adds) and body, plus every stylesheet, icon, script and image
     the HTML links (and any `url()` in a stylesheet), fetched the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import segno
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from PIL import Image
from rich.table import Table
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from chargepin.core.errors import ChargepinError
from chargepin.core.ocpp_events import SecurityEventType
from chargepin.core.pin import weakness
from chargepin.core.policy import FirmwareVersion
from chargepin.fleet import accounts, claims, factory, members
from chargepin.fleet.app import create_app
from chargepin.fleet.chargers import audit_reveal
from chargepin.fleet.csms import events, gateways, outbox, registry
from chargepin.fleet.csms.outbox import MAX_OPEN_PER_CHARGER
from chargepin.fleet.db import make_engine, transaction
from chargepin.fleet.models import Charger, PhoneBond, PinReveal, StationSecurityEvent, User
from chargepin.fleet.security import Passwords
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.sticker_photo import SENT_SIDE
from chargepin.fleet.vault import Vault
from chargepin.fleet.web import sessions
from chargepin.fleet.web.pages import PAGE_SIZE, WEB_APP_VERSION
from chargepin.lab.bench import DIGITS_MS, percentile, report_bench
from chargepin.lab.bench_fleet import machine_info, provision_chargers

DEFAULT_CHARGERS = 1_000_000
DEFAULT_REQUESTS = 200
WARMUP = 5
"""Unmeasured requests per page first: imports, templates compiled, SQLite's page cache."""

WEIGHT_TARGET_BYTES = 100_000
"""Issue 11: every page under 100 KB transferred, its stylesheet, icon and scripts included."""
SERVER_TARGET_MS = 20.0
"""Issue 11: server time per page under 20 ms at the median on the 1M-charger database."""

MANY = 200
"""Chargers of the owner with many: My chargers must not cost a query per charger."""
FEW = 3
"""Chargers of the owner with a handful (the one with thousands of events among them)."""
BUSY_EVENTS = 5_000
"""Security events on one charger, so that paging through them is measured."""
EVENTS_EACH = 5
"""Security events on every other charger of both owners."""
REVEALS = 300
"""Audited PIN reveals on the few-owner's first charger (the owner's audit is paged)."""
MEMBERS = 4
"""Invited users of the few-owner's first charger, each with paired phones."""
PHONES_EACH = 2
COMMANDS = 8
"""Commands queued for the few-owner's first charger before the measurement."""

OPTIONAL_MODEL, OPTIONAL_FIRMWARE, OPTIONAL_PRODUCED = "Volt Home", "6.8.0", dt.date(2024, 3, 15)
"""An optional-PIN charger, PIN off: its owner's Charger Info offers the pop-up to set one up."""
PHOTO_REQUESTS = 20
"""Measured requests of the photo page: each needs a photo of another sticker made first."""
PHOTO_SIZE = (4032, 3024)
"""A 12-megapixel phone photo, as the camera of a phone's browser sends it."""

BASE = "http://127.0.0.1:8000"
"""The origin the requests name (no socket is opened: the app is called in-process)."""

UVICORN_HEADERS = len(b"date: Sat, 05 Dec 2026 12:00:00 GMT\r\nserver: uvicorn\r\n")
"""Bytes of the two headers uvicorn adds to every answer, which the ASGI app does not send."""

PASSWORD = "bench-password-1"
DAY = 24 * 3600.0
"""Invitations' lifetime in seconds."""
BARE_BYTES = 3_000
"""Body of the bare route's page: about the size of a chargepin page."""


class BenchError(ChargepinError):
    """The bench could not measure (a page answered what it should not, a missing asset)."""


# ---------------------------------------------------------------- the database


@dataclass
class Seeded:
    """What the measured pages need: the accounts' session tokens and the serials and row ids
    their pages name, and pools of what a POST uses up (a sticker claims once)."""

    vault: Vault
    tokens: dict[str, str]
    serials: dict[str, str]
    values: dict[str, str]
    pools: dict[str, list[str]]
    counts: dict[str, int]


def provision(db_url: str, vault: Vault, count: int, keep: int) -> tuple[float, list[str]]:
    """`count` chargers in one transaction; (seconds, the sticker codes of the first `keep`)."""
    seconds, kept = provision_chargers(db_url, vault, count, keep)
    return seconds, [sticker for _serial, sticker in kept]


def needed_stickers(requests: int) -> int:
    """Stickers the seed uses up: the owners' chargers, and one per request of commissioning and
    of revoking (each revoked member has a charger of its own)."""
    return MANY + FEW + 2 * (WARMUP + requests + 1) + photos(requests)


def photos(requests: int) -> int:
    """Stickers the photo pages use up: each its warm-up, its measured requests and its first."""
    return sum(1 for page in PAGES if page.photo is not None) * (
        1 + min(requests, PHOTO_REQUESTS) + 1
    )


def strong_pins(count: int) -> list[str]:
    """`count` six-digit PINs the weak-PIN rule accepts (Change PIN's form)."""
    pins: list[str] = []
    while len(pins) < count:
        digits = f"{secrets.randbelow(10**6):06d}"
        if weakness(digits) is None:
            pins.append(digits)
    return pins


def sticker_photo(text: str) -> bytes:
    """A phone's photo of a sticker: 12 megapixels of sensor noise with the sticker's QR code
    (segno, as the factory prints it) filling half the frame's height, as a JPEG."""
    printed = io.BytesIO()
    segno.make(text, error="m").save(printed, kind="png", scale=8, border=4)
    width, height = PHOTO_SIZE
    side = height // 2
    code = Image.open(printed).convert("L").resize((side, side), Image.Resampling.NEAREST)
    photo = Image.effect_noise(PHOTO_SIZE, 16)
    photo.paste(code, ((width - side) // 2, (height - side) // 2))
    taken = io.BytesIO()
    photo.convert("RGB").save(taken, "JPEG", quality=85)
    return taken.getvalue()


def sent_photo(text: str) -> bytes:
    """The photo as the page's script sends it (static/photo.js): the camera's photo
    (`sticker_photo`) drawn into SENT_SIDE pixels (a canvas's smoothing) and encoded as a JPEG
    at quality 0.9 (the canvas's toBlob)."""
    with Image.open(io.BytesIO(sticker_photo(text))) as taken:
        ratio = SENT_SIDE / max(taken.size)
        size = (round(taken.width * ratio), round(taken.height * ratio))
        scaled = taken.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    sent = io.BytesIO()
    scaled.save(sent, "JPEG", quality=90)
    return sent.getvalue()


def phone_address(n: int) -> str:
    """A random static address (the two top bits set), as the charger's bond statements carry."""
    raw = (0xC0 << 40) | (n & 0xFFFF) << 24 | secrets.randbits(24)
    return ":".join(f"{(raw >> shift) & 0xFF:02X}" for shift in range(40, -8, -8))


def seed(engine: Engine, vault: Vault, stickers: list[str], requests: int) -> Seeded:
    """The measured accounts and their data, written through the fleet's service functions."""
    factory_sessions = sessionmaker(engine, expire_on_commit=False)
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(days=30)
    # One argon2 hash (the service's default profile) for every account: the bench's accounts.
    password = Passwords().hash(PASSWORD)
    pool = iter(stickers)
    tokens: dict[str, str] = {}
    serials: dict[str, str] = {}
    values: dict[str, str] = {}
    pools: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    users: dict[str, User] = {}

    def account(db: Session, name: str) -> User:
        user = User(email=f"{name}@bench.example.org", password_hash=password)
        db.add(user)
        db.flush()
        users[name] = user
        tokens[name] = accounts.start_session(db, user, later)
        return user

    def claim(db: Session, user: User) -> Charger:
        return claims.claim(db, vault, user, "127.0.0.1", next(pool), time.time())

    with transaction(factory_sessions) as db:
        for name in ("many", "few", "member", "stranger", "installer", "revoker", "optional"):
            account(db, name)
        many = [claim(db, users["many"]) for _ in range(MANY)]
        few = [claim(db, users["few"]) for _ in range(FEW)]
        serials.update(many=many[0].serial, few=few[0].serial, busy=few[1].serial)
        pools["sticker"] = [next(pool) for _ in range(WARMUP + requests + 1 + photos(requests))]

        # Optional-PIN chargers (PIN off) of their own owner: one shows the pop-up, the others
        # are set up one per request.
        optional = factory.provision(
            db,
            vault,
            count=WARMUP + requests + 2,
            model=OPTIONAL_MODEL,
            firmware=FirmwareVersion.parse(OPTIONAL_FIRMWARE),
            produced=OPTIONAL_PRODUCED,
            serial_prefix="VH",
        )
        owned = [
            claims.claim(db, vault, users["optional"], "127.0.0.1", m.sticker.encode(), time.time())
            for m in optional
        ]
        serials["optional"] = owned[0].serial
        pools["optional"] = [c.serial for c in owned[1:]]

        # Members of the first charger with their phones, and two pending invitations.
        for n in range(MEMBERS):
            user = users["member"] if n == 0 else account(db, f"member{n}")
            invitation = members.invite(db, users["few"], few[0].serial, user.email, now, 7 * DAY)
            members.accept(db, user, invitation.code, now)
            for p in range(PHONES_EACH):
                db.add(
                    PhoneBond(
                        charger_id=few[0].id,
                        user_id=user.id,
                        address=phone_address(n * PHONES_EACH + p),
                        sequence=n * PHONES_EACH + p + 1,
                        bond=secrets.token_bytes(8),
                        attested_at=now,
                    )
                )
        revoked = account(db, "revoked")
        invitation = members.invite(db, users["few"], few[0].serial, revoked.email, now, DAY)
        members.accept(db, revoked, invitation.code, now)
        members.revoke(db, users["few"], few[0].serial, revoked.id, now)
        for n in range(2):
            members.invite(
                db, users["few"], few[0].serial, f"pending{n}@bench.example.org", now, DAY
            )
        # The Revoke page's pool: an owner of many chargers with one member each (so that the
        # People page it answers is an ordinary one), one charger used up per request.
        revokable = []
        for n in range(WARMUP + requests + 1):
            charger = claim(db, users["revoker"])
            user = account(db, f"revokable{n}")
            invitation = members.invite(db, users["revoker"], charger.serial, user.email, now, DAY)
            members.accept(db, user, invitation.code, now)
            revokable.append(f"{charger.serial}/members/{user.id}")
        pools["revokable"] = revokable

        # Audited reveals (the owner's and the members'), and commands sent to the charger.
        readers = [users["few"], users["member"]]
        for n in range(REVEALS):
            reader = readers[n % len(readers)]
            audit_reveal(
                db, few[0].id, reader.id, 0, few[0].generation, WEB_APP_VERSION, now.timestamp()
            )
        for pin in strong_pins(COMMANDS // 2):
            outbox.request(db, vault, users["few"], few[0].serial, "change_pin", {"pin": pin}, now)
        for n in range(COMMANDS - COMMANDS // 2):
            address = {"address": phone_address(1000 + n)}
            outbox.request(db, vault, users["few"], few[0].serial, "remove_phone", address, now)

        # OCPP: half of the many-owner's chargers connected (some no longer heard), and the
        # first charger of each owner with a lockout still running.
        gateways.staged(db, "bench")
        for n, charger in enumerate([*many[::2], few[0]]):
            heard = now - dt.timedelta(hours=2) if n % 10 == 9 else now
            registry.take(db, charger.id, f"bench{n}", "bench", heard)
        ids = {"many": [c.id for c in many], "few": [c.id for c in few]}

    incoming = []
    lockout = '{"failures": 5, "duration": 3600, "phone": "C0:11:22:33:44:55"}'
    wrong = '{"epoch": 0, "phone": "C0:11:22:33:44:55"}'
    for charger_id in [*ids["many"], ids["few"][0], ids["few"][2]]:
        for n in range(EVENTS_EACH):
            at = now - dt.timedelta(minutes=EVENTS_EACH - n)
            kind = SecurityEventType.LOGIN_FAILED
            incoming.append(events.IncomingEvent(charger_id, kind, at.isoformat(), wrong, None, at))
    for charger_id in (ids["many"][0], ids["many"][7], ids["few"][0]):
        kind = SecurityEventType.PIN_LOCKOUT
        incoming.append(events.IncomingEvent(charger_id, kind, now.isoformat(), lockout, None, now))
    busy = ids["few"][1]
    for n in range(BUSY_EVENTS):
        at = now - dt.timedelta(seconds=BUSY_EVENTS - n)
        kind = SecurityEventType.PIN_LOCKOUT if n % 50 == 0 else SecurityEventType.LOGIN_FAILED
        info = lockout if kind == SecurityEventType.PIN_LOCKOUT else wrong
        incoming.append(events.IncomingEvent(busy, kind, at.isoformat(), info, None, at))
    for start in range(0, len(incoming), 1000):
        with engine.begin() as connection:
            events.write(connection, incoming[start : start + 1000])

    with transaction(factory_sessions) as db:
        page_ids = list(
            db.scalars(
                select(StationSecurityEvent.id)
                .where(StationSecurityEvent.charger_id == busy)
                .order_by(StationSecurityEvent.id.desc())
            )
        )
        audit = list(
            db.scalars(
                select(PinReveal.id)
                .where(PinReveal.charger_id == ids["few"][0])
                .order_by(PinReveal.id.desc())
                .limit(PAGE_SIZE)
            )
        )
    values["deep_before"] = str(page_ids[len(page_ids) // 2])
    values["audit_before"] = str(audit[-1])
    pools["pin"] = strong_pins(WARMUP + requests + 1)
    pools["phone"] = [phone_address(2000 + n) for n in range(WARMUP + requests + 1)]
    counts.update(
        many_owner_chargers=MANY,
        few_owner_chargers=FEW,
        members=MEMBERS,
        revoked_members=1,
        phones=MEMBERS * PHONES_EACH,
        reveals=REVEALS,
        commands=COMMANDS,
        events_on_one_charger=BUSY_EVENTS,
        events=len(incoming),
    )
    return Seeded(vault, tokens, serials, values, pools, counts)


# ---------------------------------------------------------------- the pages measured


@dataclass(frozen=True)
class Page:
    """One page as a browser asks for it.

    `path` and the `form` values are formatted with the seeded serials and values (`{few}`,
    `{many}`, `{busy}`, `{deep_before}`, `{audit_before}`) and, for a POST that uses something up,
    `{item}`: the next of the pool `uses` (a sticker, a member to revoke, a new PIN). `who` is
    the account whose session sends it ("visitor": none). POSTs carry the session's CSRF token
    and our Origin, as the page's own form does.
    """

    name: str
    path: str
    who: str
    method: str = "GET"
    form: dict[str, str] = field(default_factory=dict)
    uses: str | None = None
    status: int = 200
    csrf: bool = True
    """False: a forged form, without the session's CSRF token (refused, 403)."""
    photo: Callable[[str], bytes] | None = None
    """A multipart form with this photo of the sticker `{item}` (`sent_photo`: as the page's
    script sends it; `sticker_photo`: as a browser without the script sends the camera's)."""
    timed: bool = True
    """False: no server-time target (the photo as taken, sent by a browser without the page's
    script: decode-bound, shown for what it costs)."""
    requests: int | None = None
    """Fewer measured requests than the run's (a page whose every request needs a photo made)."""
    warmup: int = WARMUP


PAGES: tuple[Page, ...] = (
    Page("Sign in", "/app/signin", "visitor"),
    Page("Sign up", "/app/signup", "visitor"),
    Page(f"My chargers ({MANY} chargers)", "/app/chargers", "many"),
    Page(f"My chargers ({FEW} chargers)", "/app/chargers", "few"),
    Page("My chargers (invited user)", "/app/chargers", "member"),
    Page("Add a charger", "/app/commission", "few"),
    Page("Charger Info (owner)", "/app/chargers/{few}", "few"),
    Page("Charger Info (owner, audit page 2)", "/app/chargers/{few}?before={audit_before}", "few"),
    Page("Charger Info (invited user)", "/app/chargers/{few}", "member"),
    Page("Charger Info (optional PIN: the pop-up)", "/app/chargers/{optional}", "optional"),
    Page("Charger Info (stranger: 404)", "/app/chargers/{few}", "stranger", status=404),
    Page("Charger Info (revoked user: 403)", "/app/chargers/{few}", "revoked", status=403),
    Page("Charger Info (no such serial: 404)", "/app/chargers/" + "Z" * 40, "few", status=404),
    Page("My chargers (signed out: 303)", "/app/chargers", "visitor", status=303),
    Page("Security events (newest)", "/app/chargers/{busy}/events", "few"),
    Page("Security events (deep page)", "/app/chargers/{busy}/events?before={deep_before}", "few"),
    Page("People", "/app/chargers/{few}/people", "few"),
    Page("Accept an invitation", "/app/invitations/accept", "member"),
    Page("Show PIN (owner)", "/app/chargers/{few}/pin", "few", "POST"),
    Page("Show PIN (invited user)", "/app/chargers/{few}/pin", "member", "POST"),
    Page(
        "Show PIN (forged form: 403)",
        "/app/chargers/{few}/pin",
        "few",
        "POST",
        csrf=False,
        status=403,
    ),
    Page(
        "Commission (photo of the sticker, as the page's script sends it)",
        "/app/commission/photo",
        "installer",
        "POST",
        uses="sticker",
        photo=sent_photo,
        requests=PHOTO_REQUESTS,
        warmup=1,
    ),
    Page(
        "Commission (photo as taken: a browser without the script; no time target)",
        "/app/commission/photo",
        "installer",
        "POST",
        uses="sticker",
        photo=sticker_photo,
        requests=PHOTO_REQUESTS,
        warmup=1,
        timed=False,
    ),
    Page(
        "Commission (sticker code)",
        "/app/commission",
        "installer",
        "POST",
        {"code": "{item}"},
        uses="sticker",
    ),
    Page("Change PIN", "/app/chargers/{few}/change-pin", "few", "POST", {"pin": "{item}"}, "pin"),
    Page(
        "Set up the PIN (pop-up)",
        "/app/chargers/{item}/pin-setup",
        "optional",
        "POST",
        uses="optional",
    ),
    Page(
        "Not now (pop-up: 303)",
        "/app/chargers/{optional}/pin-setup/not-now",
        "optional",
        "POST",
        status=303,
    ),
    Page(
        "Change PIN (weak: 422)",
        "/app/chargers/{few}/change-pin",
        "few",
        "POST",
        {"pin": "123456"},
        status=422,
    ),
    Page(
        "Invite", "/app/chargers/{few}/invitations", "few", "POST", {"email": "friend@example.org"}
    ),
    Page("Revoke", "/app/chargers/{item}/revoke", "revoker", "POST", uses="revokable"),
    Page(
        "Remove a phone",
        "/app/chargers/{few}/phones/remove",
        "few",
        "POST",
        {"address": "{item}"},
        uses="phone",
    ),
)
"""Every page the fleet serves, as measured. A new page is one more entry."""


# ---------------------------------------------------------------- measuring


class TimedApp:
    """The app with a timer around each ASGI call (requests are sent one at a time): the wall
    time, and the CPU time of this whole process meanwhile (the event loop's thread and the
    handler's worker thread; nothing else of the bench runs during the call). On a shared
    machine the wall time also holds the waits for a core; the CPU time does not."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0
        self.last_cpu = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            await self.app(scope, receive, send)
        finally:
            self.last = time.perf_counter() - started
            self.last_cpu = time.process_time() - cpu


class QueryCounter:
    """SQL statements the engine executed (from any thread: the handlers run in a pool)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._one)

    def _one(self, *_args: Any) -> None:
        with self._lock:
            self.count += 1


def bare_app() -> FastAPI:
    """The baseline: FastAPI answering a constant HTML page of a chargepin page's size, with a
    plain `def` handler like the pages' (both pay the thread-pool hop)."""
    app = FastAPI(title="chargepin bench baseline")
    body = "<!doctype html><title>bare</title><p>" + "x" * BARE_BYTES + "</p>"

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return body

    return app


def transferred(response: httpx.Response) -> int:
    """Bytes on the wire for this answer over HTTP/1.1, uncompressed as the app sends it."""
    reason = HTTPStatus(response.status_code).phrase
    head = len(f"HTTP/1.1 {response.status_code} {reason}\r\n".encode()) + UVICORN_HEADERS + 2
    head += sum(len(name) + len(value) + 4 for name, value in response.headers.raw)
    return head + len(response.content)


class _Links(HTMLParser):
    """The subresources a browser fetches for a page: stylesheets, icons, scripts, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        rel = set((values.get("rel") or "").lower().split())
        if tag == "link" and rel & {"stylesheet", "icon", "preload", "modulepreload", "manifest"}:
            self._add(values.get("href"))
        elif tag in ("script", "img", "iframe", "source", "audio", "video", "embed"):
            self._add(values.get("src"))

    def _add(self, url: str | None) -> None:
        if url and url not in self.urls:
            self.urls.append(url)


CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)|@import\s+['\"]([^'\"]+)['\"]")


def subresources(page_url: str, html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return [urljoin(page_url, url) for url in parser.urls]


@dataclass
class Sent:
    """What one request cost: its answer, the app's time and its SQL statements."""

    response: httpx.Response
    seconds: float
    cpu_seconds: float
    queries: int


class Browser:
    """Sends the pages' requests, as each account's browser would, to the timed app."""

    def __init__(
        self, client: httpx.AsyncClient, timed: TimedApp, queries: QueryCounter, seeded: Seeded
    ) -> None:
        self.client = client
        self.timed = timed
        self.queries = queries
        self.seeded = seeded
        self.used: dict[str, int] = {}

    def _values(self, page: Page) -> dict[str, str]:
        values = {**self.seeded.serials, **self.seeded.values}
        if page.uses is not None:
            n = self.used.get(page.uses, 0)
            pool = self.seeded.pools.get(page.uses, [])
            if n >= len(pool):
                raise BenchError(f"the pool {page.uses} of {page.name} ran out after {n}")
            values["item"] = pool[n]
            self.used[page.uses] = n + 1
        return values

    def _headers(self, who: str) -> dict[str, str]:
        token = self.seeded.tokens.get(who)
        return {} if token is None else {"Cookie": f"{sessions.SESSION_COOKIE}={token}"}

    async def send(self, page: Page) -> Sent:
        values = self._values(page)
        path = page.path.format(**values)
        headers = self._headers(page.who)
        before = self.queries.count
        if page.method == "GET":
            response = await self.client.get(path, headers=headers)
        else:
            token = self.seeded.tokens[page.who]
            form = {name: value.format(**values) for name, value in page.form.items()}
            if page.csrf:
                key = sessions.csrf_key(self.seeded.vault)
                form[sessions.CSRF_FIELD] = sessions.csrf_token(key, token)
            files = None
            if page.photo is not None:
                files = {"photo": ("sticker.jpg", page.photo(values["item"]), "image/jpeg")}
            response = await self.client.post(
                path, data=form, files=files, headers={**headers, "Origin": BASE}
            )
        sent = Sent(response, self.timed.last, self.timed.last_cpu, self.queries.count - before)
        if response.status_code != page.status:
            raise BenchError(
                f"{page.name} ({page.method} {page.path}) answered {response.status_code}, "
                f"not {page.status}: {response.text[:300]}"
            )
        return sent

    async def weight(self, page: Page, answer: httpx.Response) -> dict[str, Any]:
        """The page and everything it links, as a first visit downloads them."""
        assets: dict[str, int] = {}
        todo = subresources(str(answer.url), answer.text)
        while todo:
            url = todo.pop(0)
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" != BASE:
                raise BenchError(f"{page.name} loads {url} from another origin")
            asset = await self.client.get(url, headers=self._headers(page.who))
            if asset.status_code != 200:
                raise BenchError(f"{page.name} links {url}, which answered {asset.status_code}")
            assets[parts.path] = transferred(asset)
            if asset.headers.get("content-type", "").startswith("text/css"):
                for match in CSS_URL.finditer(asset.text):
                    linked = urljoin(url, match.group(1) or match.group(2))
                    if urlsplit(linked).path not in assets and linked not in todo:
                        todo.append(linked)
        page_bytes = transferred(answer)
        total = page_bytes + sum(assets.values())
        return {"page": page_bytes, "assets": assets, "total": total}


def summary_ms(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, p95 (nearest rank), min and max of durations in milliseconds."""
    return {
        "median": round(statistics.median(samples), DIGITS_MS),
        "p95": round(percentile(samples, 0.95), DIGITS_MS),
        "min": round(min(samples), DIGITS_MS),
        "max": round(max(samples), DIGITS_MS),
        "n": len(samples),
    }


async def measure_pages(
    app: FastAPI, engine: Engine, seeded: Seeded, pages: Sequence[Page], requests: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each page `requests` times (after `WARMUP`), each request followed by a bare one."""
    timed, bare = TimedApp(app), TimedApp(bare_app())
    queries = QueryCounter(engine)
    results: list[dict[str, Any]] = []
    bare_all: list[float] = []
    bare_cpu: list[float] = []
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=timed), base_url=BASE) as client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url=BASE) as baseline,
    ):
        browser = Browser(client, timed, queries, seeded)
        for page in pages:
            first = await browser.send(page)
            weight = await browser.weight(page, first.response)
            ours: list[float] = []
            theirs: list[float] = []
            cpu: list[float] = []
            counted: list[int] = []
            for n in range(page.warmup + min(requests, page.requests or requests)):
                sent = await browser.send(page)
                bare_answer = await baseline.get("/page")
                if bare_answer.status_code != 200:
                    raise BenchError(f"the bare route answered {bare_answer.status_code}")
                if n >= page.warmup:
                    ours.append(sent.seconds * 1000.0)
                    cpu.append(sent.cpu_seconds * 1000.0)
                    theirs.append(bare.last * 1000.0)
                    bare_cpu.append(bare.last_cpu * 1000.0)
                    counted.append(sent.queries)
            bare_all.extend(theirs)
            server = summary_ms(ours)
            bare_median = statistics.median(theirs)
            # The verdicts are on the reported values, so the report never contradicts itself.
            results.append(
                {
                    "name": page.name,
                    "method": page.method,
                    "path": page.path,
                    "who": page.who,
                    "status": page.status,
                    "bytes": weight,
                    "server_ms": server,
                    "server_cpu_ms": summary_ms(cpu),
                    "bare_ms": summary_ms(theirs),
                    "ratio_to_bare": round(server["median"] / bare_median, 1),
                    "queries": {"median": statistics.median(counted), "max": max(counted)},
                    "weight_pass": weight["total"] < WEIGHT_TARGET_BYTES,
                    "time_pass": not page.timed or server["median"] < SERVER_TARGET_MS,
                    "time_target": page.timed,
                }
            )
    return results, {**summary_ms(bare_all), "cpu": summary_ms(bare_cpu)}


# ---------------------------------------------------------------- report


def command_line(json_path: Path | None, chargers: int, requests: int, db_url: str | None) -> str:
    """The CLI command that reproduces a run with these settings."""
    parts = ["chargepin bench app"]
    if json_path is not None:
        parts.append(f"--json {json_path}")
    parts.append(f"--chargers {chargers} --requests {requests}")
    if db_url is not None:
        parts.append("--db-url " + db_url.split("://", 1)[0] + "://...")
    return " ".join(parts)


def run_bench(
    directory: Path,
    chargers: int,
    requests: int,
    db_url: str | None = None,
    command: str = "",
    pages: Sequence[Page] = PAGES,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; the SQLite database lives under `directory`
    (or the database at `db_url`, which must be empty: the bench fills it and leaves it)."""
    keep = needed_stickers(requests)
    if requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests}")
    if chargers < keep:
        raise ValueError(
            f"chargers must be at least {keep:,} for {requests} requests per page "
            f"(the measured accounts claim {MANY + FEW}; commissioning and revoking use one "
            "per request)"
        )
    started = dt.datetime.now(dt.UTC)
    url = db_url or f"sqlite:///{directory / 'fleet.db'}"
    vault = Vault.generate()
    provision_s, stickers = provision(url, vault, chargers, keep)
    engine = make_engine(url)
    try:
        began = time.perf_counter()
        seeded = seed(engine, vault, stickers, requests)
        seed_s = time.perf_counter() - began
        # The owner's pages queue a command per measured request (Change PIN, Set up, Remove a
        # phone) for chargers that never connect: the outbox's cap per charger would refuse
        # them after 20. What is measured is the page, not the cap (tests/fleet/test_outbox_cap).
        queued = COMMANDS + 3 * (WARMUP + requests + 1)
        settings = FleetSettings(db_url=url, outbox_max_open=max(queued, MAX_OPEN_PER_CHARGER))
        app = create_app(settings, vault=vault, engine=engine)
        measured, bare = asyncio.run(measure_pages(app, engine, seeded, pages, requests))
    finally:
        engine.dispose()
    database: dict[str, Any] = {
        "kind": engine.dialect.name,
        "chargers": chargers,
        "provision_s": round(provision_s, 1),
        "seed_s": round(seed_s, 1),
        "seeded": seeded.counts,
    }
    if db_url is None:
        database["mib"] = round((directory / "fleet.db").stat().st_size / 2**20, 1)
    return {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "database": database,
        "requests_per_page": requests,
        "warmup_per_page": WARMUP,
        "timing": "in-process: a timer around the ASGI call (TimedApp), one request at a time; "
        "server_ms is wall time (the target's), server_cpu_ms the process's CPU time meanwhile",
        "targets": {"bytes": WEIGHT_TARGET_BYTES, "server_median_ms": SERVER_TARGET_MS},
        "bare_ms": bare,
        "pages": measured,
        "pass": all(p["weight_pass"] and p["time_pass"] for p in measured),
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
    }


def _verdict(page: dict[str, Any]) -> str:
    missed = [
        what
        for what, held in (("weight", page["weight_pass"]), ("time", page["time_pass"]))
        if not held
    ]
    if missed:
        return "MISS " + ", ".join(missed)
    return "pass" if page.get("time_target", True) else "pass (weight; no time target)"


def report_table(report: dict[str, Any]) -> Table:
    """The short human summary the CLI prints."""
    database = report["database"]
    table = Table(
        title=f"chargepin bench app ({database['kind']}, {database['chargers']:,} chargers, "
        f"{report['requests_per_page']} requests per page)"
    )
    table.add_column("page")
    table.add_column("KB", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("CPU p50", justify="right")
    table.add_column("x bare", justify="right")
    table.add_column("SQL", justify="right")
    table.add_column("< 100 KB, < 20 ms")
    for page in report["pages"]:
        table.add_row(
            f"{page['method']} {page['name']}",
            f"{page['bytes']['total'] / 1000:.1f}",
            f"{page['server_ms']['median']:.2f}",
            f"{page['server_ms']['p95']:.2f}",
            f"{page['server_cpu_ms']['median']:.2f}",
            f"{page['ratio_to_bare']:.1f}",
            f"{page['queries']['median']:g}",
            _verdict(page),
        )
    bare = report["bare_ms"]
    table.add_row(
        "bare FastAPI HTML route",
        "",
        f"{bare['median']:.2f}",
        f"{bare['p95']:.2f}",
        f"{bare['cpu']['median']:.2f}",
        "1.0",
        "",
        "",
    )
    return table


def run_app_bench(
    json_path: Path | None,
    chargers: int = DEFAULT_CHARGERS,
    requests: int = DEFAULT_REQUESTS,
    db_url: str | None = None,
) -> int:
    """Run the bench, print a short table, write the JSON report; the exit code.

    0 when every page meets both targets, 1 when one misses one, 2 when the bench could not
    measure (the message says why).
    """
    command = command_line(json_path, chargers, requests, db_url)

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="chargepin-bench-app-") as tmp:
            return run_bench(Path(tmp), chargers, requests, db_url, command)

    return report_bench(
        measure,
        (ChargepinError, ValueError, httpx.HTTPError),
        report_table,
        json_path,
        lambda report: bool(report["pass"]),
    )
