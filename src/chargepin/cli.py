"""`chargepin`: one command line for the charger, the phone, the fleet, the radio and the lab.

This module only assembles the command lines of the packages (`chargepin.charger.cli`,
`chargepin.phone.cli`, `chargepin.fleet.cli`, `chargepin.radio.cli`, `chargepin.lab.cli` with
`demo` and `bench`).

Every command parses its arguments, calls one library function and prints the answer. An expected
failure (any `ChargepinError`) prints one line `error: <what happened and what to do>` on stderr
and exits with the error's `exit_code`: 2 (as for bad usage) unless the error says otherwise, as
each of the phone's errors does. Tracebacks are for bugs only.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from chargepin import __version__
from chargepin.charger.cli import charger_app
from chargepin.fleet.cli import fleet_app
from chargepin.lab.cli import bench_app, demo, lab_app
from chargepin.phone.cli import phone_app
from chargepin.radio.cli import radio

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


app.command("radio")(radio)
app.command("demo")(demo)
app.add_typer(charger_app, name="charger")
app.add_typer(phone_app, name="phone")
app.add_typer(bench_app, name="bench")
app.add_typer(fleet_app, name="fleet")
app.add_typer(lab_app, name="lab")


def main() -> None:
    """The `chargepin` console script."""
    app()


if __name__ == "__main__":
    main()
