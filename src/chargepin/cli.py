"""`chargepin`: one command line for the charger, the phone, the fleet, the radio and the lab.

This module only assembles the command lines of the packages (`chargepin.charger.cli`,
`chargepin.phone.cli`, `chargepin.fleet.cli`, `chargepin.radio.cli`, `chargepin.lab.cli` with
`demo` and `bench`). A part whose extra is not installed (`chargepin.extras`) is replaced by a
command that says which extra to install, so a charger installed with `chargepin[charger]` has
its commands and a one-line answer for the fleet's or the lab's.

Every command parses its arguments, calls one library function and prints the answer. An expected
failure (any `ChargepinError`) prints one line `error: <what happened and what to do>` on stderr
and exits with the error's `exit_code`: 2 (as for bad usage) unless the error says otherwise, as
each of the phone's errors does. Tracebacks are for bugs only.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated

import typer
from rich.markup import escape

from chargepin import __version__
from chargepin.cli_errors import reports_errors
from chargepin.extras import APP, CHARGER, EXTRAS, FLEET, LAB, PHONE, Extra, MissingExtra

app = typer.Typer(
    name="chargepin",
    help="Bluetooth LE PIN protection for EV chargers: charger, phone, virtual radio, lab.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a failing frame may hold a factory secret or a PIN: never print them.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chargepin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log the Bluetooth stack's details too.")
    ] = False,
) -> None:
    """Bluetooth LE PIN protection for EV chargers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    # Expected pairing failures (wrong PIN, lockout) make Bumble log warnings; the commands
    # report outcomes themselves.
    logging.getLogger("bumble").setLevel(logging.INFO if verbose else logging.ERROR)


def add_not_installed(parent: typer.Typer, name: str, extra: Extra, *, group: bool = True) -> None:
    """Register `NAME ...` on `parent` as a command that says which extra to install (exit 2).

    It takes any arguments and options, `--help` included, so whatever the user typed after NAME
    gets the same one-line answer.
    """

    def command() -> None:
        raise MissingExtra(name, extra, group=group)

    # Typer renders help as Rich markup, where "[fleet]" would be a style tag.
    command.__doc__ = escape(f"Not installed: pip install 'chargepin[{extra.name}]'.")
    command.__name__ = f"{name}_not_installed"
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    parent.command(name, context_settings=settings)(reports_errors(command))


ROLES: tuple[tuple[str, Extra, str, bool], ...] = (
    # name, extra, "module:attribute", a group (add_typer) or a command; in `--help` order:
    # commands first, then groups.
    ("radio", CHARGER, "chargepin.radio.cli:radio", False),
    ("demo", LAB, "chargepin.lab.cli:demo", False),
    ("app", APP, "chargepin.app.cli:app_command", False),
    ("charger", CHARGER, "chargepin.charger.cli:charger_app", True),
    ("phone", PHONE, "chargepin.phone.cli:phone_app", True),
    ("bench", LAB, "chargepin.lab.cli:bench_app", True),
    ("fleet", FLEET, "chargepin.fleet.cli:fleet_app", True),
    ("lab", LAB, "chargepin.lab.cli:lab_app", True),
)
"""Each role's entry point, imported only when its extra is installed."""

_installed = {extra: extra.installed() for extra in EXTRAS}
for _name, _extra, _target, _group in ROLES:
    if not _installed[_extra]:
        add_not_installed(app, _name, _extra, group=_group)
        continue
    _module, _attribute = _target.split(":")
    _entry = getattr(importlib.import_module(_module), _attribute)
    if _group:
        app.add_typer(_entry, name=_name)
    else:
        app.command(_name)(_entry)


def main() -> None:
    """The `chargepin` console script."""
    app()


if __name__ == "__main__":
    main()
