"""A new PostgreSQL database per test, on the server CHARGEPIN_TEST_POSTGRES names (the Makefile
starts one: .ci/postgres.sh), dropped when the test ends, whoever still holds connections."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES = os.environ.get("CHARGEPIN_TEST_POSTGRES")
"""The server's URL base (`postgresql+psycopg://user@127.0.0.1:5432`), None when not given."""

needs_postgres = pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL")


@contextlib.contextmanager
def new_database() -> Iterator[str]:
    """The URL of a database made for the caller, dropped (WITH FORCE) when the block ends."""
    import sqlalchemy

    if not POSTGRES:
        raise RuntimeError("CHARGEPIN_TEST_POSTGRES names no PostgreSQL server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()
