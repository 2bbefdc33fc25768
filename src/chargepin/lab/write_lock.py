"""Another writer holding the fleet database's write lock: what a long `chargepin fleet
provision` or `rotate-key` does to the service while it runs.

For the tests and `chargepin lab attack fleet-http` (issue 9, point 4: a write the database
could not take was answered 200). A real lock from a second connection, no fault injection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy
from sqlalchemy import make_url


@contextmanager
def write_lock_held(db_url: str, *tables: str) -> Iterator[None]:
    """Another connection holds the write lock until the block ends (SQLite: the database's,
    PostgreSQL: `tables`' in EXCLUSIVE mode, which still lets readers in)."""
    if db_url.startswith("sqlite"):
        database = make_url(db_url).database
        assert database, f"{db_url} names no database file"
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = sqlalchemy.create_engine(db_url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
            yield
            transaction.rollback()
    finally:
        engine.dispose()
