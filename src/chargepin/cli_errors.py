"""How every `chargepin` command reports an expected failure: one line on stderr, an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from chargepin.core.errors import ChargepinError
from chargepin.phone.errors import PhoneError

USAGE_EXIT = 2
"""Exit code of bad usage (Click's) and of every ChargepinError that is not a PhoneError."""

P = ParamSpec("P")
R = TypeVar("R")


def exit_code(error: ChargepinError) -> int:
    return error.exit_code if isinstance(error, PhoneError) else USAGE_EXIT


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an expected failure into one line on stderr and its exit code, without traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ChargepinError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(exit_code(error)) from None

    return wrapper
