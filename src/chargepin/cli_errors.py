"""How every `chargepin` command reports an expected failure: one line, the error's exit code.

It knows only the root of the hierarchy (`core.errors.ChargepinError`), whose `exit_code` each
error carries, so the CLIs of every package share it without importing each other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from chargepin.core.errors import ChargepinError

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an expected failure into one line on stderr and its exit code, without traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ChargepinError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper
