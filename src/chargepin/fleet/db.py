"""The fleet database: engine, sessions and migrations. SQLite file by default, PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, Select, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from chargepin.core.errors import InvalidConfig
from chargepin.fleet.errors import Conflict, FleetError, ServiceBusy

DEFAULT_URL = "sqlite:///chargepin-fleet.db"
LOCK_TIMEOUT = 30.0
"""Seconds a statement waits for another transaction's lock before the request gives up (503)."""
POOL_TIMEOUT = 30.0
"""Seconds a request waits for a free pooled connection before it gives up (503 busy)."""
STATEMENT_TIMEOUT = 30.0
"""Seconds one statement may run on PostgreSQL before the server cancels it (503 busy)."""


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file of `url` readable by its owner only (0600), if it is new.

    The file holds PIN ciphertexts, claim-code digests and login-token digests; with the
    process's usual umask SQLite would create it 0644. SQLite gives its -wal and -shm files the
    database file's mode. An existing file keeps the mode its operator chose.
    """
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return


def make_engine(
    url: str,
    lock_timeout: float = LOCK_TIMEOUT,
    statement_timeout: float | None = None,
    **pool: Any,
) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout and a 0600 file.

    Both databases wait `lock_timeout` for a lock another writer holds (SQLite's busy timeout,
    PostgreSQL's lock_timeout), then fail the statement: the request answers 503 (see
    `refusal`) instead of hanging for as long as the other writer runs. On PostgreSQL a
    `statement_timeout` bounds any one statement, however slow the server is (SQLite has no
    server: its statements are this process's own work). `pool` goes to create_engine
    (pool_size, max_overflow, pool_timeout): every request uses one connection of it, never
    two, so any size works (tests run the claims on a pool of one); a request that finds none
    free within pool_timeout is 503 too. Back-pressure, never a hang (docs/FLEET.md, "Limits").
    """
    database_url(url)
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"timeout": lock_timeout, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql+psycopg"):
        connect_args = postgres_options(lock_timeout, statement_timeout)
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)


CONNECT_TIMEOUT = 10
"""Seconds a new PostgreSQL connection may take before it fails (libpq's connect_timeout)."""
KEEPALIVE_IDLE = 30
"""TCP keepalives after this many idle seconds, then every 10 s, 3 lost: a server that vanished
without closing the connection (a cut network) is noticed within about a minute."""
APPLICATION_NAME = "chargepin"
"""How the service's connections name themselves in pg_stat_activity."""


def postgres_options(
    lock_timeout: float = LOCK_TIMEOUT, statement_timeout: float | None = None
) -> dict[str, Any]:
    """psycopg's connection parameters for every connection the service opens to PostgreSQL:
    the engine's (`make_engine`), the PIN reveal's on the event loop (fleet/reveals.py)
    and a gateway's LISTEN (fleet/csms/route.py). One place, so they cannot drift apart."""
    options = f"-c lock_timeout={_ms(lock_timeout)}"
    if statement_timeout is not None:
        options += f" -c statement_timeout={_ms(statement_timeout)}"
    return {
        "options": options,
        "connect_timeout": CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": APPLICATION_NAME,
    }


def database_url(url: str) -> URL:
    """`url` parsed, or InvalidConfig saying which URLs the service takes (not a traceback)."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except sa_exc.ArgumentError:
        # Not the URL itself: it may hold a password.
        scheme = url.split("://", 1)[0] if "://" in url else "none"
        raise InvalidConfig(
            f"the --db URL (scheme {scheme[:40]!r}) is not a database URL the service can use: "
            "give sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/NAME"
        ) from None
    return parsed


def _ms(seconds: float) -> int:
    """A timeout for PostgreSQL in whole milliseconds, at least 1 (0 would mean none)."""
    return max(1, round(seconds * 1000))


_SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes, masked to 8 bits)
_SQLITE_COLLISIONS = {1555, 2067, 787}  # constraint PRIMARYKEY, UNIQUE, FOREIGNKEY
_PG_BUSY = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_PG_CANCELLED = "57014"  # query_canceled: statement_timeout (or an operator's pg_cancel_backend)
_PG_COLLISIONS = {"23505", "23503"}  # unique violation, foreign key violation
_PG_GONE = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now


def _postgres_unreachable(orig: BaseException | None, sqlstate: str | None) -> bool:
    """psycopg's OperationalError of a server that went away or cannot be reached: no SQLSTATE
    (refused, closed unexpectedly), a connection exception (class 08) or a shutdown."""
    if not isinstance(orig, psycopg.OperationalError):
        return False
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _PG_GONE


def refusal(error: Exception) -> FleetError | None:
    """What a database failure means to the caller, when it is not a bug: None otherwise.

    Another writer holding the lock past the timeout, a deadlock or a serialization failure:
    nothing was written, 503 with Retry-After. PostgreSQL not answering (stopped, restarting,
    the connection lost): 503 too. A unique or foreign-key violation: a concurrent request
    changed the same thing first (one invitation accepted twice at once), 409. Anything else is
    a fault of the service and stays a 500 (the app's handler).
    """
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return ServiceBusy("the service is busy (no free database connection); try again")
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    return driver_refusal(error.orig)


def driver_refusal(orig: BaseException | None) -> FleetError | None:
    """`refusal` of the driver's own exception (sqlite3's, psycopg's)."""
    sqlstate = getattr(orig, "sqlstate", None)
    if _postgres_unreachable(orig, sqlstate):
        return ServiceBusy("the fleet's database does not answer; try again")
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlstate in _PG_BUSY or (
        isinstance(sqlite_code, int) and (sqlite_code & 0xFF) in _SQLITE_BUSY
    ):
        return ServiceBusy(
            "another change to the database was in progress and this one could not wait for "
            "it; nothing was changed, try again"
        )
    if sqlstate == _PG_CANCELLED:
        return ServiceBusy(
            "the database is too slow to answer now (the statement ran past the service's "
            "statement timeout); nothing was changed, try again"
        )
    if sqlstate in _PG_COLLISIONS or sqlite_code in _SQLITE_COLLISIONS:
        return Conflict(
            "a request made at the same time changed this first; nothing was changed: reload "
            "and try again if it still applies",
            code="concurrent_change",
        )
    return None


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("chargepin.fleet") / "migrations")
    )
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


MIGRATION_LOCK = 0x63686770  # "chgp"
"""The PostgreSQL advisory lock key `migrate` holds."""


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent). On PostgreSQL one process at a
    time (an advisory lock held by the migration's transaction): API workers and gateways
    started together on a new database do not race to create the same tables."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A migration may rewrite a large table: the requests' statement timeout is not its
            # (nor the wait for another process's migration).
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        require_known_revision(connection, config)
        command.upgrade(config, "head")


def require_known_revision(connection: Connection, config: Config) -> None:
    """InvalidConfig when the database's schema is newer than this version of chargepin knows
    (a rolling upgrade migrated it, and an old process starts or restarts): said in one line
    rather than Alembic's traceback, with what to do."""
    current = MigrationContext.configure(connection).get_current_revision()
    scripts = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise InvalidConfig(
            f"the database's schema is at revision {current}, newer than this version of "
            f"chargepin knows (up to {scripts.get_current_head()}): a newer version migrated "
            'it; run that version here too (docs/DEPLOY.md, "Migrations and upgrades")'
        )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


_Query = TypeVar("_Query", bound=Select)  # type: ignore[type-arg]  # any row shape


def keyset_page(
    query: _Query, id_column: InstrumentedAttribute[int], before: int | None, limit: int
) -> _Query:
    """One page of a list, newest first: the rows below id `before` (all when None), `limit`
    of them. Keyset paging (docs/FLEET.md, "Paging"): rows added meanwhile never shift a page,
    and a flood of new rows cannot push the old ones out of reach."""
    if before is not None:
        query = query.where(id_column < before)
    return query.order_by(id_column.desc()).limit(limit)
