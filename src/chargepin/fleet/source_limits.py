"""Per-source limits: how fast and how much at once one client address may use the service.

A pure ASGI middleware in front of every route, HTTP and OCPP WebSocket alike (issue 12):

- **Request rate**, `rate` requests per `window` seconds per source (a fixed window). On
  PostgreSQL the counter is a row of `source_hits` bumped by one UPSERT per request, so the
  limit holds across every API worker and gateway process on the database; the UPSERT commits
  without waiting for its WAL flush (a counter lost in a crash only forgives a few requests).
  A source refused once is remembered in the process until its window ends, so a flood past the
  limit costs no database write. SQLite serves one process: its counters are in that process.
- **At once**, `in_flight` HTTP requests and `sockets` open WebSockets per source, in each
  process: a connection lives and dies with its process (a killed worker's would stay counted
  in a shared table), so with N processes a source may hold N times these (docs/FLEET.md).

A source is the peer's address, an IPv6 client's /64 (accounts.source_key); behind a proxy the
operator names the header it sets (`header`, e.g. X-Forwarded-For, whose last entry is the one
the proxy appended). The `exempt` networks (loopback by default: the host's own tools, the
benches, a proxy that does not say who its client is) are never limited, nor is a peer without
an address (a Unix socket, an in-process test client). A refusal is 429
with Retry-After: `{"error", "detail"}` for the API, the pages' own error page under /app, and
an HTTP answer to a WebSocket handshake (never an accepted socket).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chargepin.clock import Clock
from chargepin.core.errors import InvalidConfig
from chargepin.fleet.accounts import source_key
from chargepin.fleet.db import refusal
from chargepin.fleet.models import SourceHit

LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_REMEMBERED = 100_000
"""Sources a process remembers as refused (or counts, on SQLite) in one window at most: past
it the window's memory is cleared, which forgives, never refuses, so memory stays bounded
whatever an attacker with many addresses sends."""


@dataclass(frozen=True)
class SourceLimitSettings:
    """The limits (FleetSettings carries them; docs/FLEET.md, "Limits that protect the
    service"). `rate` 0 turns the rate limit off, `in_flight`/`sockets` 0 theirs."""

    rate: int = 600
    window: float = 60.0
    in_flight: int = 32
    sockets: int = 1000
    header: str | None = None
    exempt: tuple[str, ...] = LOOPBACK

    def __post_init__(self) -> None:
        for name in ("rate", "in_flight", "sockets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidConfig(
                    f"source limit {name} must be a whole number >= 0, got {value!r}"
                )
        if not 1 <= self.window <= 3600:
            raise InvalidConfig(f"source limit window must be 1 to 3600 seconds, got {self.window}")
        if self.header is not None and not _HEADER_NAME.issuperset(self.header.lower()):
            raise InvalidConfig(f"source header {self.header!r} is not an HTTP header name")
        for network in self.exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise InvalidConfig(
                    f"exempt source {network!r} is not an address or network like 10.0.0.0/8"
                ) from None


_TABLE = SourceHit.metadata.tables[SourceHit.__tablename__]

_HEADER_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class BadSource(ValueError):
    """The trusted header did not carry an address (a proxy set up wrong, or not in front)."""


def client_address(scope: Scope, header: str | None) -> str | None:
    """The client's address as the service counts it: the last entry of the trusted `header`
    when the operator named one (`--source-header`) and the request carries it, else the
    socket's peer (None without one). The one rule for the per-source limits and for the
    login and claim throttles (`request_address`): behind a proxy the peer is the proxy.
    BadSource when the header is there but does not end with an address."""
    if header is not None:
        name = header.lower().encode()
        values = [v for k, v in scope["headers"] if k == name]
        if values:
            host: str = values[-1].decode("latin-1").split(",")[-1].strip()
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise BadSource(
                    f"the {header} header does not end with a client address; "
                    "the proxy in front of the service must set it"
                ) from None
            return host
    client = scope.get("client")
    return str(client[0]) if client else None


def request_address(request: Request) -> str | None:
    """`client_address` of a request to the fleet's app, under its settings' header: what the
    login, registration and claim throttles count (SourceLimits has refused a bad header with
    400 before any route runs)."""
    header = request.app.state.fleet.settings.source_limits.header
    return client_address(request.scope, header)


@dataclass
class _Window:
    number: int = -1
    refused: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)  # SQLite: the one process's counters


class SourceLimits:
    """The middleware (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: SourceLimitSettings,
        engine: Engine,
        clock: Clock,
        refusal_page: Callable[[Request, int, str, str], Response],
    ) -> None:
        self.app = app
        self.limits = limits
        self.engine = engine
        self.clock = clock
        self.refusal_page = refusal_page
        self.shared = engine.dialect.name == "postgresql"
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in limits.exempt]
        self.window = _Window()
        self.in_flight: dict[str, int] = {}
        self.sockets: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            source = self.source_of(scope)
        except BadSource as error:
            await self.refuse(scope, receive, send, 400, "bad_source", str(error), None)
            return
        if source is None:
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        at_once, cap = (
            (self.sockets, self.limits.sockets)
            if websocket
            else (
                self.in_flight,
                self.limits.in_flight,
            )
        )
        if cap and at_once.get(source, 0) >= cap:
            what = "open OCPP connections" if websocket else "requests in progress"
            detail = (
                f"{cap} {what} from your address already: the most one address may have at "
                "once; finish those first"
            )
            await self.refuse(scope, receive, send, 429, "too_many_requests", detail, 1)
            return
        try:
            wait = await self.count(source) if self.limits.rate else None
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as failure:
            busy = refusal(failure)
            if busy is None:
                raise
            # The counter waits no longer than a request would (the pool's timeout, the
            # statement timeout), then says what the request would have said: busy.
            retry = int((busy.headers or {}).get("Retry-After", "5"))
            await self.refuse(scope, receive, send, busy.status, busy.code, str(busy), retry)
            return
        if wait is not None:
            detail = (
                f"more than {self.limits.rate} requests from your address in "
                f"{self.limits.window:g} s, the most this service takes; try again in {wait} s"
            )
            await self.refuse(scope, receive, send, 429, "too_many_requests", detail, wait)
            return
        at_once[source] = at_once.get(source, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = at_once[source] - 1
            if left:
                at_once[source] = left
            else:
                del at_once[source]

    def source_of(self, scope: Scope) -> str | None:
        """The source key of the request, None when it is exempt."""
        host = client_address(scope, self.limits.header)
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return None  # no network peer: a Unix socket's (local) or an in-process client's
        mapped = getattr(address, "ipv4_mapped", None)
        if any((mapped or address) in network for network in self.exempt):
            return None
        return source_key(host).removeprefix("source:")[:64]

    async def count(self, source: str) -> int | None:
        """Count one request of `source`; None when it is within the rate, else the whole
        seconds until its window ends (Retry-After)."""
        now = self.clock.now()
        number = math.floor(now / self.limits.window)
        wait = max(1, math.ceil((number + 1) * self.limits.window - now))
        window = self.window
        if window.number != number or len(window.refused) + len(window.counts) > MAX_REMEMBERED:
            window = self.window = _Window(number)
            if self.shared:
                await run_in_threadpool(self._forget, number)
        if source in window.refused:
            return wait
        if self.shared:
            hits = await run_in_threadpool(self._bump, number, source)
        else:
            hits = window.counts[source] = window.counts.get(source, 0) + 1
        if hits <= self.limits.rate:
            return None
        window.refused.add(source)
        window.counts.pop(source, None)
        return wait

    def _bump(self, number: int, source: str) -> int:
        table = _TABLE
        statement = (
            pg_insert(table)
            .values(bucket=number, source=source, hits=1)
            .on_conflict_do_update(
                index_elements=["bucket", "source"], set_={"hits": table.c.hits + 1}
            )
            .returning(table.c.hits)
        )
        with self.engine.begin() as connection:
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            return int(connection.execute(statement).scalar_one())

    def _forget(self, number: int) -> None:
        """Delete the windows before the previous one (a range of the primary key)."""
        table = _TABLE
        with self.engine.begin() as connection:
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            connection.execute(delete(table).where(table.c.bucket < number - 1))

    async def refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        detail: str,
        retry_after: int | None,
    ) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if scope["type"] == "websocket":
            await _refuse_handshake(scope, receive, send, status, code, detail, headers)
            return
        response: Response
        if scope["path"] == "/app" or scope["path"].startswith("/app/"):
            response = self.refusal_page(Request(scope), status, "Too many requests", detail)
            response.headers.update(headers)
        else:
            response = JSONResponse({"error": code, "detail": detail}, status, headers)
        await response(scope, receive, send)


async def _refuse_handshake(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str],
) -> None:
    """An HTTP answer to the handshake (the Denial Response extension), else a close before
    accepting (uvicorn then answers 403): never an accepted socket."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        # Starlette's response sends the websocket.http.response.* messages for this scope.
        await JSONResponse({"error": code, "detail": detail}, status, headers)(scope, receive, send)
        return
    await send({"type": "websocket.close", "code": 1013})
