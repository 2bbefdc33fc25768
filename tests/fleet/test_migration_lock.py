"""Every fleet process upgrades the schema at start (`serve --workers N`, several hosts): on
PostgreSQL the upgrades queue on an advisory lock instead of running the same DDL twice."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import inspect, text

from chargepin.core.errors import InvalidConfig
from chargepin.fleet.db import MIGRATION_LOCK, make_engine, migrate
from tests.helpers.cli import invoke

WAIT = 30.0


def test_a_second_upgrade_waits_for_the_first_and_finds_the_schema_current(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's writers queue on its file lock; the advisory lock is PostgreSQL's")
    holder = make_engine(db_url)
    engine = make_engine(db_url)
    failures: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate(engine)
        except BaseException as error:  # reported by the test below
            failures.append(error)

    try:
        with holder.connect() as held:
            held.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            worker = threading.Thread(target=upgrade)
            worker.start()
            deadline = time.monotonic() + WAIT
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            while held.execute(waiting).scalar_one() == 0:
                assert worker.is_alive(), f"the upgrade ran past the lock: {failures}"
                assert time.monotonic() < deadline, "the upgrade never waited for the lock"
                time.sleep(0.02)  # polling pg_locks, bounded by the deadline
            assert "alembic_version" not in inspect(held).get_table_names()
            held.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            held.commit()
        worker.join(WAIT)
        assert not worker.is_alive() and not failures, failures
        migrate(engine)  # and once more, as the next worker would: nothing to do
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        holder.dispose()
        engine.dispose()


def test_an_older_version_on_a_newer_schema_says_so_in_one_line(db_url: str) -> None:
    """A rolling upgrade migrated the database; a process of the old version (re)starts: it
    refuses with what to do, not Alembic's traceback, and changes nothing."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
        with pytest.raises(InvalidConfig, match="revision ffffffffffff, newer than this version"):
            migrate(engine)
        code, _, error = invoke("fleet", "status", "--db", db_url)
        assert code == 2 and "newer than this version of chargepin knows" in error
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "ffffffffffff"
    finally:
        engine.dispose()
