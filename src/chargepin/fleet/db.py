"""The fleet database: engine, sessions and migrations. SQLite file by default, PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///chargepin-fleet.db"


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


def make_engine(url: str, **pool: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout and a 0600 file.

    `pool` goes to create_engine (pool_size, max_overflow, pool_timeout): every request uses
    one connection of it, never two, so any size works (tests run the claims on a pool of one).
    """
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("chargepin.fleet") / "migrations")
    )
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session
