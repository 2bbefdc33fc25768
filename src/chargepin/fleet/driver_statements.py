"""A SQLAlchemy Core statement compiled once for a dialect and run on the driver's connection.

The PIN reveal on PostgreSQL runs on the event loop with psycopg's AsyncConnection
(fleet/reveals.py), without SQLAlchemy's execution layer, which was a quarter of its CPU
(docs/PERFORMANCE.md). The SQL still comes from the one Core definition (`access.LIVE_MEMBER`,
`chargers.AUDIT_INSERT`): compiled here once, with the types' own bind and result processors
applied as SQLAlchemy would, so the row reads the same either way.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql.expression import Executable

_Processor = Callable[[Any], Any]


class DriverStatement:
    """`statement` compiled for `dialect`: its SQL in the driver's paramstyle, its parameters'
    bind processors and, for a SELECT, its rows' result processors and column names."""

    def __init__(
        self,
        statement: Executable,
        dialect: Dialect,
        column_keys: Sequence[str] | None = None,
    ) -> None:
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=list(column_keys) if column_keys else None
        )
        self.sql: str = str(compiled)
        self._binds: dict[str, _Processor] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._binds[name] = process
        columns = list(getattr(statement, "selected_columns", ()))
        self._row = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
        self._results: list[tuple[int, _Processor]] = []
        for index, column in enumerate(columns):
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                self._results.append((index, process))

    def parameters(self, values: Mapping[str, object]) -> dict[str, object]:
        """`values` as the driver is given them (bytes wrapped, types converted)."""
        binds = self._binds
        return {k: (binds[k](v) if k in binds else v) for k, v in values.items()}

    def row(self, values: Sequence[Any] | None) -> Any:
        """A row of the driver's as SQLAlchemy would hand it back: named columns, each
        converted by its type (a firmware column gives a FirmwareVersion); None stays None."""
        if values is None:
            return None
        if not self._results:
            return self._row(*values)
        converted = list(values)
        for index, process in self._results:
            converted[index] = process(converted[index])
        return self._row(*converted)
