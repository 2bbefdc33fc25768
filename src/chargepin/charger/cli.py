"""`chargepin charger ...`: provision a charger's state file, inspect it, run the daemon.

Thin: each command parses its options and calls one function of `chargepin.charger`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from chargepin.charger import (
    ChargerReport,
    CsmsOptions,
    LockoutOverrides,
    Provisioned,
    charger_report,
    csms_password,
    current_pin,
    factory_identity,
    provision_charger,
    run_charger,
)
from chargepin.cli_errors import reports_errors
from chargepin.cli_serve import announce_ready, serve_until_signal
from chargepin.core.csms_link import BACKOFF_MAX, BACKOFF_MIN
from chargepin.core.errors import format_duration
from chargepin.core.lockout import LockoutScope
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName

if TYPE_CHECKING:
    from chargepin.charger.daemon import ChargerDaemon

charger_app = typer.Typer(
    help="The charger: provision, inspect, run the daemon.", no_args_is_help=True
)

StateOption = Annotated[
    Path, typer.Option("--state", help="The charger's state database (SQLite file).")
]


@charger_app.command("init")
@reports_errors
def charger_init(
    state: StateOption,
    serial: Annotated[
        str | None, typer.Option(help="Serial number, as on the charger's label.")
    ] = None,
    model: Annotated[str | None, typer.Option(help='Model name, e.g. "Pulsar Max".')] = None,
    firmware: Annotated[str | None, typer.Option(help="Firmware version, e.g. 6.11.2.")] = None,
    produced: Annotated[
        datetime.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Production date, YYYY-MM-DD."),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Provisioning bundle from `chargepin fleet provision`: serial, model, "
            "firmware, production date and factory secret."
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Random static address (C0:..:..); a new random one if omitted."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="CHARGEPIN_FACTORY_SECRET",
            help="Factory secret, 64 hex characters; a new random one if omitted.",
        ),
    ] = None,
    profile: Annotated[ProfileName, typer.Option(help="Security profile.")] = DEFAULT_PROFILE,
    lockout_failures: Annotated[
        int | None, typer.Option(help="Wrong PINs that lock the charger (profile default 5).")
    ] = None,
    lockout_window: Annotated[
        float | None, typer.Option(help="Seconds the failures are counted in (default 60).")
    ] = None,
    lockout_seconds: Annotated[
        float | None, typer.Option(help="Seconds a lock lasts (default 300).")
    ] = None,
) -> None:
    """Provision a new charger's state file (the factory step); never prints the secret or PIN."""
    identity = factory_identity(
        bundle,
        serial=serial,
        model=model,
        firmware=None if firmware is None else FirmwareVersion.parse(firmware),
        produced=None if produced is None else produced.date(),
        secret=secret,
    )
    result = provision_charger(
        state,
        serial=identity.serial,
        model=identity.model,
        firmware=identity.firmware,
        produced=identity.produced,
        address=address,
        secret=identity.secret,
        profile=profile,
        overrides=LockoutOverrides(lockout_failures, lockout_window, lockout_seconds),
    )
    typer.echo(_describe_provisioned(result))


_SCOPE_TEXT = {LockoutScope.PAIRING: "new pairings", LockoutScope.ALL: "every connection"}


def _describe_provisioned(result: Provisioned) -> str:
    lock = result.lockout
    pin = "on" if result.pin_enabled else "off (the owner enables it)"
    return (
        f"provisioned {result.identity.serial} ({result.identity.model}, firmware "
        f"{result.identity.firmware}) at {result.path}\n"
        f"  address  {result.identity.address}\n"
        f"  PIN      {result.policy.mode.value}, {pin}\n"
        f"  profile  {result.profile}: {lock.failures} wrong PINs in {lock.window:g} s block "
        f"{_SCOPE_TEXT[lock.scope]} for {format_duration(lock.duration)}"
    )


@charger_app.command("info")
@reports_errors
def charger_info(
    state: StateOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a charger's identity, PIN class and state, lockout, paired phones and event counts."""
    report = charger_report(state)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report)


def _print_report(report: ChargerReport) -> None:
    console = Console()
    identity = report.identity
    lock = report.lockout
    table = Table(title=f"Charger {identity.serial}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    lock_text = (
        f"locked, retry in {format_duration(lock.retry_after)}"
        if lock.locked
        else f"not locked, {lock.failures_in_window}/{lock.config.failures} wrong PINs in the "
        f"last {lock.config.window:g} s"
    )
    rows = [
        ("model", identity.model),
        ("firmware", str(identity.firmware)),
        ("produced", identity.produced.isoformat()),
        ("address", identity.address),
        ("PIN class", f"{report.policy.mode.value}: {report.policy.reason}"),
        (
            "PIN",
            ("on" if report.pin_enabled else "off") + (", custom" if report.custom_pin else ""),
        ),
        ("epoch", str(report.epoch)),
        ("PIN generation", str(report.generation)),
        ("profile", str(report.profile)),
        ("lockout", lock_text),
        ("OCPP", _ocpp_text(report)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    phones = Table(title="Paired phones")
    for column in ("address", "PIN used", "paired at"):
        phones.add_column(column)
    for bond in report.bonds:
        created = datetime.datetime.fromtimestamp(bond.created).isoformat(timespec="seconds")
        phones.add_row(bond.address, "yes" if bond.authenticated else "no", created)
    console.print(phones if report.bonds else "Paired phones: none")
    counters = Table(title="Events")
    counters.add_column("event")
    counters.add_column("count", justify="right")
    for kind, count in sorted(report.counters.items()):
        counters.add_row(kind, str(count))
    console.print(counters)


def _ocpp_text(report: ChargerReport) -> str:
    password = "password set by a CSMS" if report.csms_password_rotated else "derived password"
    if not report.csms_queue or report.csms_queue_since is None:
        return f"no event waiting for the CSMS, {password}"
    since = datetime.datetime.fromtimestamp(report.csms_queue_since).isoformat(timespec="seconds")
    return f"{report.csms_queue} events waiting for the CSMS since {since}, {password}"


@charger_app.command("pin")
@reports_errors
def charger_pin(state: StateOption) -> None:
    """Print the PIN pairing needs now (the charger's own service console)."""
    typer.echo(current_pin(state).digits)


@charger_app.command("run")
@reports_errors
def charger_run(
    state: StateOption,
    transport: Annotated[
        str, typer.Option(help="HCI transport, e.g. tcp-client:127.0.0.1:9001, usb:0.")
    ],
    advertising_interval: Annotated[
        float, typer.Option(min=20.0, help="Advertising interval in ms (20 ms connects fastest).")
    ] = 20.0,
    csms: Annotated[
        str | None,
        typer.Option(
            help="OCPP 2.0.1 CSMS to report to, e.g. wss://csms.example.com/ocpp/ (the serial "
            "is appended) or a URL ending in /SERIAL."
        ),
    ] = None,
    csms_ca: Annotated[
        Path | None,
        typer.Option(help="PEM file of the private CA that signed the CSMS's certificate."),
    ] = None,
    insecure_csms: Annotated[
        bool,
        typer.Option(
            "--insecure-csms",
            help="Allow ws:// (password in clear) to a CSMS beyond loopback: trusted networks.",
        ),
    ] = False,
    csms_backoff_max: Annotated[
        float,
        typer.Option(
            min=BACKOFF_MIN,
            max=BACKOFF_MAX,
            help="Longest wait in seconds between two attempts to reach the CSMS (the wait "
            "doubles from 1 s up to this, plus up to half of it at random).",
        ),
    ] = BACKOFF_MAX,
) -> None:
    """Run the charger daemon until SIGINT or SIGTERM; prints `READY address=.. serial=..`."""
    options = None if csms is None else CsmsOptions(csms, csms_ca, insecure_csms, csms_backoff_max)

    def on_ready(daemon: ChargerDaemon) -> None:
        announce_ready(f"address={daemon.address} serial={daemon.store.identity.serial}")

    serve_until_signal(
        lambda stop: run_charger(
            state,
            transport,
            advertising_interval=advertising_interval,
            on_ready=on_ready,
            stop=stop,
            csms=options,
        )
    )


@charger_app.command("csms-password")
@reports_errors
def charger_csms_password(state: StateOption) -> None:
    """Print the Basic auth password the charger gives its OCPP CSMS (username: the serial).

    To enrol the charger in another CSMS; a CSMS that rotated it with SetVariables gets the
    rotated one here too.
    """
    typer.echo(csms_password(state))
