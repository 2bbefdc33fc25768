"""How a fuzz check judges one call: the documented error with a message, or a finding.

Bumble logs, rather than raises, what a GATT handler raised: `logged_errors` collects it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from chargepin.core.errors import ChargepinError

T = TypeVar("T")
E = TypeVar("E", bound=ChargepinError)


def outcome(call: Callable[[], T], documented: type[E]) -> T | E:
    """What `call` returns, or the documented error it raised with a message.

    Anything else escaping the code under test is the bug fuzzing looks for; it becomes an
    AssertionError that names the exception, with the original as its cause.
    """
    try:
        return call()
    except documented as error:
        if not str(error).strip():
            raise AssertionError(f"{type(error).__name__} without a message") from error
        return error
    except Exception as error:  # any other exception is the finding
        raise AssertionError(
            f"{exception_name(error)} instead of {documented.__name__}: {error}"
        ) from error


def exception_name(error: BaseException) -> str:
    """`ValueError`, or `struct.error` for exceptions outside the builtins."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class ErrorLog(logging.Handler):
    """Collects ERROR records: Bumble logs, rather than raises, what a GATT handler or a task
    raised, and leaves the request unanswered."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.on_record: Callable[[], None] | None = None
        """Called on every record (the GATT harness stops waiting for an answer with it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record()

    def take(self) -> list[str]:
        """The messages logged since the last call, each with the exception it carries."""
        messages = []
        for record in self.records:
            text = _ANSI_COLOUR.sub("", record.getMessage()).strip()
            error = record.exc_info[1] if record.exc_info else None
            if error is not None:
                text += f" {type(error).__name__}: {error}"
            messages.append(text)
        self.records.clear()
        return messages


@contextlib.contextmanager
def logged_errors() -> Iterator[ErrorLog]:
    """Collect the ERROR records logged inside the block (from any logger)."""
    log = ErrorLog()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        yield log
    finally:
        root.removeHandler(log)
