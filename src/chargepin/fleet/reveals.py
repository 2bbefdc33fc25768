"""A live member's PIN reveal, the service's hot path: in a thread, or on the event loop.

`member_reveal` is the reveal for a live member in one transaction on an engine (the
thread-pool hop's path, and SQLite's on the loop). `LoopReveals` runs a reveal on the event
loop without ever blocking it: on a SQLite file with a busy timeout of 0, on PostgreSQL with
psycopg's AsyncConnection (`PostgresReveals`). Either way the rules are the same functions
(`access.live_member`, `chargers.epoch_reveal`) and only the I/O differs; anything but a live
member's plain success takes the thread-pool hop, whose ordinary path says what is wrong
(docs/PERFORMANCE.md, "Issue 13: the reveal on PostgreSQL, on the event loop").
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Engine, StaticPool, event
from sqlalchemy import exc as sa_exc

from chargepin.fleet import chargers
from chargepin.fleet.access import LIVE_MEMBER, live_member, live_member_by_token
from chargepin.fleet.db import driver_refusal, make_engine, postgres_options
from chargepin.fleet.driver_statements import DriverStatement
from chargepin.fleet.errors import ServiceBusy
from chargepin.fleet.times import utc_now

if TYPE_CHECKING:
    from chargepin.fleet.app import FleetState
    from chargepin.fleet.settings import FleetSettings


def member_reveal(
    state: FleetState, engine: Engine, digest: bytes, serial: str, epoch: int, version: str
) -> dict[str, object] | None:
    """The reveal for a live member, in one transaction on `engine`; None when the token, the
    membership or the charger does not hold (the ordinary path then says which)."""
    with engine.begin() as conn:
        now_utc = utc_now(state.clock)
        found = live_member_by_token(conn, digest, serial, now_utc)
        if found is None:
            return None
        pin = chargers.pin_for_epoch(
            conn, state.vault, found, found.user_id, epoch, version, state.clock.now()
        )
        return {"serial": found.serial, "epoch": epoch, "pin": pin.digits}


_Cursor = psycopg.AsyncCursor[Any]
"""A cursor of one of PostgresReveals' connections, reused for its every statement."""


class PostgresReveals:
    """A live member's reveal on PostgreSQL, run on the event loop: two statements, no waiting.

    The thread-pool hop, `pool_pre_ping`'s `SELECT 1`, SQLAlchemy's execution layer and
    psycopg's separate BEGIN and COMMIT were most of the reveal's CPU on PostgreSQL. Here the
    LIVE_MEMBER SELECT and the audit INSERT, compiled once from their Core definitions, run on
    psycopg's AsyncConnection in autocommit: the INSERT commits by itself, and the PIN is
    answered only after it did (no PIN without its audit row; an INSERT or commit that fails
    answers nothing from here). The SELECT only reads, so at READ COMMITTED one transaction
    around both would see and lock nothing more.

    At most `size` connections, each used by one reveal at a time and by this loop's thread
    only. A reveal that finds all of them in use awaits one (the loop serves other requests
    meanwhile) at most `timeout`, then 503 busy, as the engine's pool answers. A reveal whose
    connection fails (PostgreSQL restarted or stopped) takes the thread-pool hop, whose engine
    pings the connection first: answered once PostgreSQL is back, 503 while it is not. A refusal
    (a lock or statement timeout, a deadlock) is answered as the engine's would be
    (`db.refusal`), not tried again.
    """

    def __init__(self, engine: Engine, size: int, timeout: float, options: dict[str, Any]) -> None:
        _args, params = engine.dialect.create_connect_args(engine.url)
        self._connect = {**params, **options, "autocommit": True}
        self.size = size
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: deque[asyncio.Future[_Cursor | None]] = deque()
        self.idle: list[_Cursor] = []
        """A cursor on each idle connection (reused: one fewer object per statement)."""
        self.opened = 0
        """Connections open now (idle or in use)."""
        self.busy = 0
        """Reveals that waited for a connection past `timeout` (503 busy)."""
        self.lost = 0
        """Reveals whose connection failed or could not be made, and took the hop."""
        self.closed = False
        self._select = DriverStatement(LIVE_MEMBER, engine.dialect)
        self._insert = DriverStatement(
            chargers.AUDIT_INSERT, engine.dialect, chargers.AUDIT_COLUMNS
        )

    async def reveal(
        self, state: FleetState, digest: bytes, serial: str, epoch: int, version: str
    ) -> dict[str, object] | None:
        """The answer, or None when this reveal must take the hop."""
        cursor = await self._checkout()
        if cursor is None:
            return None
        try:
            await cursor.execute(
                self._select.sql, self._select.parameters({"token_hash": digest, "serial": serial})
            )
            found = live_member(self._select.row(await cursor.fetchone()), utc_now(state.clock))
            if found is None:
                return None
            decided = chargers.epoch_reveal(
                state.vault, found, found.user_id, epoch, version, state.clock.now()
            )
            await cursor.execute(self._insert.sql, self._insert.parameters(decided.audit))
        except psycopg.Error as error:
            refused = driver_refusal(error)
            if refused is not None and not cursor.connection.broken:
                raise refused from error
            self.lost += 1
            self._drop_idle()  # PostgreSQL went away: the idle connections are from before
            return None
        finally:
            self._checkin(cursor)
        return {"serial": found.serial, "epoch": epoch, "pin": decided.pin.digits}

    async def _checkout(self) -> _Cursor | None:
        """A connection for this reveal, or None (take the hop). All in use: wait for one
        (the loop serves other requests meanwhile) at most `timeout`, then 503 busy, as the
        engine's pool answers."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._waiters or self.opened > len(self.idle):
                return None  # in use on another loop (a test's second server): the hop's turn
            self._loop = loop  # the waits below are futures of this loop
        if self.closed:
            return None
        while self.idle:
            cursor = self.idle.pop()
            if not cursor.connection.closed:
                return cursor
            self.opened -= 1
        if self.opened >= self.size:
            waiter: asyncio.Future[_Cursor | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, self.timeout)
            except TimeoutError:
                self.busy += 1
                raise ServiceBusy(
                    "the service is busy (no free database connection); try again"
                ) from None
            except asyncio.CancelledError:  # the client went away: give back what it got
                if waiter.done() and not waiter.cancelled():
                    given = waiter.result()
                    if given is None:
                        self._closed_one()  # the place kept for it
                    else:
                        self._checkin(given)
                raise
            if handed is not None:
                return handed
            # A connection was closed meanwhile and its place kept for this reveal to open.
        else:
            self.opened += 1
        try:
            connection = await psycopg.AsyncConnection.connect(**self._connect)
        except psycopg.Error:
            self._closed_one()
            self.lost += 1
            return None
        return connection.cursor(binary=True)

    def _checkin(self, cursor: _Cursor) -> None:
        connection = cursor.connection
        idle = connection.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
        if idle and not self.closed and not connection.closed:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(cursor)
                    return
            self.idle.append(cursor)
            return
        _finish(connection)
        self._closed_one()

    def _closed_one(self) -> None:
        """One connection fewer: its place goes to a reveal waiting for one, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # `opened` keeps counting the place it opens
                return
        self.opened -= 1

    def _drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for cursor in idle:
            _finish(cursor.connection)
            self._closed_one()

    def close(self) -> None:
        """Close the idle connections now, those in use when their reveal ends (from any
        thread: the app's engine is disposed where its owner runs)."""
        self.closed = True
        idle, self.idle = self.idle, []
        for cursor in idle:
            _finish(cursor.connection)
            self.opened -= 1


def _finish(connection: psycopg.AsyncConnection[Any]) -> None:
    """Close `connection` from any code, async or not: AsyncConnection.close() awaits nothing
    but this (libpq's PQfinish), and the app's engine is disposed from synchronous code."""
    connection.pgconn.finish()


class LoopReveals:
    """A member's reveal run on the event loop itself, never blocking it; None: take the hop.

    The thread-pool hop was the largest piece of the reveal's own cost left (docs/
    PERFORMANCE.md). On the loop, nothing may wait. On a SQLite file a reveal waiting for the
    write lock, held by a synchronous handler whose commit needs the loop, would stop every
    request for the lock timeout. So this runs on its own connection (one, used only by the
    loop's thread) with a busy timeout of 0: when the write lock is taken it gives up at once
    (None) and the reveal takes the thread-pool hop as before. On PostgreSQL the round trips
    are awaited with psycopg's AsyncConnection (`PostgresReveals`), so the loop serves other
    requests meanwhile.
    """

    def __init__(self, engine: Engine, settings: FleetSettings) -> None:
        url = engine.url
        database = url.database or ""
        self.engine: Engine | None = None
        self.postgres: PostgresReveals | None = None
        self.gave_up = 0
        """SQLite: reveals that found the write lock taken and took the hop instead."""
        in_a_file = database not in ("", ":memory:") and not database.startswith("file:")
        if url.get_backend_name() == "sqlite" and in_a_file:
            loop_engine = self.engine = make_engine(
                url.render_as_string(hide_password=False), 0.0, poolclass=StaticPool
            )
            # Closed with the app's engine (LocalFleet.dispose, the end of a test).
            event.listen(engine, "engine_disposed", lambda _conn: loop_engine.dispose())
        elif url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
            options = postgres_options(settings.db_lock_timeout, settings.db_statement_timeout)
            postgres = self.postgres = PostgresReveals(
                engine, settings.db_pool_size, settings.db_pool_timeout, options
            )
            event.listen(engine, "engine_disposed", lambda _conn: postgres.close())

    async def reveal(
        self, state: FleetState, digest: bytes, serial: str, epoch: int, version: str
    ) -> dict[str, object] | None:
        """The answer, or None when this reveal must take the hop (not a live member, no
        connection free, SQLite's write lock taken, PostgreSQL gone)."""
        if self.postgres is not None:
            return await self.postgres.reveal(state, digest, serial, epoch, version)
        if self.engine is None:
            return None
        try:
            return member_reveal(state, self.engine, digest, serial, epoch, version)
        except sa_exc.OperationalError as error:
            code = getattr(error.orig, "sqlite_errorcode", None)
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                self.gave_up += 1
                return None  # rolled back; the hop waits for the lock as any request does
            raise
