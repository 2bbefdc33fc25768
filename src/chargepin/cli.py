"""`chargepin`: one command line for the charger, the phone, the virtual radio and the lab.

Every command parses its arguments, calls one library function and prints the answer; the
behaviour lives in `chargepin.charger.service`, `chargepin.phone.flows` and the lab. An expected
failure (any `ChargepinError`) prints one line `error: <what happened and what to do>` on stderr
and exits with the error's `exit_code`: 2 (as for bad usage) unless the error says otherwise, as
each of the phone's errors does. Tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from chargepin import __version__
from chargepin.charger.service import (
    ChargerReport,
    LockoutOverrides,
    Provisioned,
    charger_report,
    current_pin,
    factory_identity,
    provision_charger,
    run_charger,
)
from chargepin.cli_errors import reports_errors
from chargepin.core.errors import format_duration
from chargepin.core.lockout import LockoutScope
from chargepin.core.profiles import DEFAULT_PROFILE, ProfileName
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    ChargerInfo,
    ChargerStatus,
    ChargingState,
)
from chargepin.fleet.cli import fleet_app
from chargepin.lab.cli import lab_app

if TYPE_CHECKING:
    from chargepin.charger.daemon import ChargerDaemon
    from chargepin.phone.client import FoundCharger
    from chargepin.phone.flows import PhoneOptions

# The Bluetooth stack (Bumble) takes about half a second to import: the commands that need it
# import it themselves, so `chargepin --help`, `charger init|info|pin` stay quick.


app = typer.Typer(
    name="chargepin",
    help="Bluetooth LE PIN protection for EV chargers: charger, phone, virtual radio, lab.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a failing frame may hold a factory secret or a PIN: never print them.
    pretty_exceptions_show_locals=False,
)
charger_app = typer.Typer(
    help="The charger: provision, inspect, run the daemon.", no_args_is_help=True
)
phone_app = typer.Typer(
    help="A phone: find, pair, read and control chargers.", no_args_is_help=True
)
bench_app = typer.Typer(help="Benchmarks that measure the claims in docs/.", no_args_is_help=True)
app.add_typer(charger_app, name="charger")
app.add_typer(phone_app, name="phone")
app.add_typer(bench_app, name="bench")
app.add_typer(fleet_app, name="fleet")
app.add_typer(lab_app, name="lab")


# ------------------------------------------------------------------------------- plumbing


def _serve_until_signal(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` with SIGINT and SIGTERM setting `stop`, so both end it cleanly (exit 0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for number in signals:
            loop.add_signal_handler(number, stop.set)
        try:
            await serve(stop)
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

    asyncio.run(main())


def _ready(line: str) -> None:
    """The one line a supervisor (or a test) waits for before using the service."""
    sys.stdout.write(f"READY {line}\n")
    sys.stdout.flush()


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


# ------------------------------------------------------------------------------- charger

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
        firmware=firmware,
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
        ("firmware", identity.firmware),
        ("produced", identity.produced.isoformat()),
        ("address", identity.address),
        ("PIN class", f"{report.policy.mode.value}: {report.policy.reason}"),
        (
            "PIN",
            ("on" if report.pin_enabled else "off") + (", custom" if report.custom_pin else ""),
        ),
        ("epoch", str(report.epoch)),
        ("profile", report.profile),
        ("lockout", lock_text),
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
) -> None:
    """Run the charger daemon until SIGINT or SIGTERM; prints `READY address=.. serial=..`."""

    def on_ready(daemon: ChargerDaemon) -> None:
        _ready(f"address={daemon.address} serial={daemon.store.identity.serial}")

    _serve_until_signal(
        lambda stop: run_charger(
            state,
            transport,
            advertising_interval=advertising_interval,
            on_ready=on_ready,
            stop=stop,
        )
    )


# ------------------------------------------------------------------------------- radio


def _parse_ports(text: str) -> list[int]:
    """The `--ports` list, or a usage error naming the option."""
    ports: list[int] = []
    for part in text.split(","):
        try:
            port = int(part.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{part.strip()!r} is not a port number", param_hint="'--ports'"
            ) from None
        if not 1 <= port <= 65535:
            raise typer.BadParameter(f"port {port} is outside 1-65535", param_hint="'--ports'")
        ports.append(port)
    if len(set(ports)) != len(ports):
        raise typer.BadParameter("each port may appear once", param_hint="'--ports'")
    return ports


@app.command("radio")
@reports_errors
def radio(
    ports: Annotated[
        str, typer.Option(help="Comma-separated TCP ports on 127.0.0.1, one per controller.")
    ],
) -> None:
    """Serve a virtual radio: one controller per port on 127.0.0.1; prints `READY ports=..`."""
    numbers = _parse_ports(ports)
    _serve_until_signal(lambda stop: _serve_radio(numbers, stop))


async def _serve_radio(ports: Sequence[int], stop: asyncio.Event) -> None:
    from chargepin.radio.transport import TransportError
    from chargepin.radio.virtual import serve_radio

    try:
        transports = await serve_radio(ports)
    except OSError as error:
        raise TransportError(
            f"cannot serve the virtual radio on 127.0.0.1 ports {ports}: {error.strerror}; "
            "pick free ports"
        ) from error
    try:
        _ready(f"ports={','.join(map(str, ports))}")
        await stop.wait()
    finally:
        for transport in transports:
            await transport.close()


# ------------------------------------------------------------------------------- phone

TransportOption = Annotated[
    str,
    typer.Option(
        envvar="CHARGEPIN_TRANSPORT",
        help="The phone's HCI transport, e.g. tcp-client:127.0.0.1:9002.",
    ),
]
BondsOption = Annotated[
    Path,
    typer.Option(envvar="CHARGEPIN_BONDS", help="The phone's bonds and identity (SQLite file)."),
]
TargetArgument = Annotated[str, typer.Argument(help="The charger's address or serial.")]
PinOption = Annotated[
    str | None,
    typer.Option(help="The charger's 6-digit PIN, used only if this phone has no bond yet."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to look for the charger.")
]


def _options(transport: str, bonds: Path, timeout: float = 5.0) -> PhoneOptions:
    from chargepin.phone.flows import PhoneOptions

    return PhoneOptions(transport=transport, bonds=bonds, find_timeout=timeout)


@phone_app.command("scan")
@reports_errors
def phone_scan(
    transport: TransportOption,
    bonds: BondsOption,
    seconds: Annotated[float, typer.Option(min=0.1, help="How long to listen.")] = 2.0,
) -> None:
    """List the chargers heard advertising."""
    from chargepin.phone import flows

    chargers = asyncio.run(flows.scan(_options(transport, bonds), seconds))
    if not chargers:
        typer.echo(f"no charger heard in {seconds:g} s", err=True)
    for charger in chargers:
        typer.echo(_describe_found(charger))


def _describe_found(charger: FoundCharger) -> str:
    return (
        f"{charger.address}  {charger.serial}  PIN {'on' if charger.pin_enabled else 'off'}"
        f"  epoch {charger.epoch}{'  LOCKED' if charger.locked else ''}"
    )


@phone_app.command("pair")
@reports_errors
def phone_pair(
    transport: TransportOption,
    bonds: BondsOption,
    target: TargetArgument,
    pin: PinOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Pair with a charger (its PIN if it has one on), or reconnect with an existing bond."""
    from chargepin.phone import flows

    outcome = asyncio.run(flows.pair(_options(transport, bonds, timeout), target, pin))
    if not outcome.paired_now:
        typer.echo(f"already paired: reconnected with the bond ({outcome.serial})")
    elif outcome.pin_used:
        typer.echo(f"paired with {outcome.serial} (PIN used)")
    else:
        typer.echo(f"paired with {outcome.serial} (its PIN is off: no PIN needed)")


@phone_app.command("info")
@reports_errors
def phone_info(
    transport: TransportOption,
    bonds: BondsOption,
    target: TargetArgument,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Read a charger's open info (no pairing): identity, PIN class and state, epoch, lockout."""
    from chargepin.phone import flows

    typer.echo(
        _describe_info(asyncio.run(flows.read_info(_options(transport, bonds, timeout), target)))
    )


def _describe_info(info: ChargerInfo) -> str:
    locked = f"locked, retry in {format_duration(info.retry_after)}" if info.locked else "no"
    return "\n".join(
        [
            f"serial    {info.serial}",
            f"model     {info.model}",
            f"firmware  {info.firmware}",
            f"PIN class {info.pin_mode.name.lower()}",
            f"PIN       {'on' if info.pin_enabled else 'off'}",
            f"epoch     {info.epoch}",
            f"locked    {locked}",
        ]
    )


def _describe_status(status: ChargerStatus) -> str:
    state = "charging" if status.state is ChargingState.CHARGING else "idle"
    cable = "locked" if status.cable_locked else "unlocked"
    return f"{state}, limit {status.current_limit} A, cable {cable}, {status.energy_wh} Wh"


def _status_command(name: str, summary: str, flow: str) -> None:
    """Register `chargepin phone NAME`: run `flows.<flow>` and print the charging status."""

    def command(
        transport: TransportOption,
        bonds: BondsOption,
        target: TargetArgument,
        pin: PinOption = None,
        timeout: TimeoutOption = 5.0,
    ) -> None:
        from chargepin.phone import flows

        options = _options(transport, bonds, timeout)
        status = asyncio.run(getattr(flows, flow)(options, target, pin))
        typer.echo(_describe_status(status))

    command.__doc__ = summary
    command.__name__ = f"phone_{name}"
    phone_app.command(name)(reports_errors(command))


for _name, _summary, _flow in (
    ("status", "Read the charging status (needs the bond, or --pin to pair first).", "status"),
    ("start", "Start charging.", "start_charging"),
    ("stop", "Stop charging.", "stop_charging"),
):
    _status_command(_name, _summary, _flow)


@phone_app.command("limit")
@reports_errors
def phone_limit(
    transport: TransportOption,
    bonds: BondsOption,
    target: TargetArgument,
    amps: Annotated[
        int,
        typer.Option(min=MIN_CURRENT_A, max=MAX_CURRENT_A, help="Charging current limit (A)."),
    ],
    pin: PinOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Set the charging current limit."""
    from chargepin.phone import flows

    options = _options(transport, bonds, timeout)
    typer.echo(_describe_status(asyncio.run(flows.set_current_limit(options, target, amps, pin))))


@phone_app.command("forget")
@reports_errors
def phone_forget(
    transport: TransportOption,
    bonds: BondsOption,
    target: TargetArgument,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Delete this phone's bond with a charger (the next pairing needs the PIN)."""
    from chargepin.phone import flows

    outcome = asyncio.run(flows.forget(_options(transport, bonds, timeout), target))
    if outcome.existed:
        typer.echo(f"forgot {outcome.address}")
    else:
        typer.echo(f"no bond with {outcome.address}; nothing to forget")


# ------------------------------------------------------------------------------- phone + fleet

LoginOption = Annotated[
    Path,
    typer.Option(
        "--login-file",
        envvar="CHARGEPIN_LOGIN_FILE",
        help="Where the app's fleet login is kept (fleet URL and token, mode 0600).",
    ),
]
DEFAULT_LOGIN = Path.home() / ".config" / "chargepin" / "phone-login.json"
SerialArgument = Annotated[str, typer.Argument(help="The charger's serial.")]


@phone_app.command("login")
@reports_errors
def phone_login(
    fleet: Annotated[str, typer.Option(help="The fleet service, e.g. http://127.0.0.1:8000.")],
    email: Annotated[str, typer.Option(help="The account's e-mail address.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, envvar="CHARGEPIN_PASSWORD")
    ],
    register: Annotated[bool, typer.Option(help="Create the account first.")] = False,
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """Log in to the fleet service (optionally registering) and remember the login."""
    from chargepin.phone import fleet_flows

    who = asyncio.run(fleet_flows.login(login_file, fleet, email, password, register))
    typer.echo(f"logged in as {who}; login kept in {login_file}")


def _describe_charger_info(info: object) -> str:
    from chargepin.phone.fleet_client import ChargerInfo

    assert isinstance(info, ChargerInfo)
    shown = f"PIN {info.pin}" if info.pin else (info.message or "no PIN")
    return f"{info.serial} ({info.model}): you are {info.role}; {shown}"


@phone_app.command("commission")
@reports_errors
def phone_commission(
    payload: Annotated[str, typer.Argument(help="The text of the QR code on the sticker.")],
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """Claim a charger by its sticker: you become its owner and see its PIN."""
    from chargepin.phone import fleet_flows

    typer.echo(_describe_charger_info(asyncio.run(fleet_flows.commission(login_file, payload))))


@phone_app.command("charger-info")
@reports_errors
def phone_charger_info(serial: SerialArgument, login_file: LoginOption = DEFAULT_LOGIN) -> None:
    """Charger Info: your role and the PIN (every view is audited)."""
    from chargepin.phone import fleet_flows

    typer.echo(_describe_charger_info(asyncio.run(fleet_flows.charger_info(login_file, serial))))


@phone_app.command("connect")
@reports_errors
def phone_connect(
    transport: TransportOption,
    bonds: BondsOption,
    serial: SerialArgument,
    pin: PinOption = None,
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Connect: bonded without the PIN, else with the PIN from the fleet (one guided retry)."""
    from chargepin.phone import fleet_flows

    outcome = asyncio.run(
        fleet_flows.connect(
            login_file, _options(transport, bonds, timeout), serial, pin, typer.echo
        )
    )
    how = "paired with the PIN" if outcome.paired_now else "reconnected with the bond"
    typer.echo(f"{how}: {outcome.serial}")


def _owner_action(
    transport: str,
    bonds: Path,
    serial: str,
    login_file: Path,
    timeout: float,
    action: str,
    args: dict[str, str] | None = None,
) -> None:
    from chargepin.core.tickets import Action
    from chargepin.phone import fleet_flows

    result = asyncio.run(
        fleet_flows.owner_action(
            login_file, _options(transport, bonds, timeout), serial, Action(action), args
        )
    )
    phones = f"; phones: {', '.join(result.phones)}" if result.phones else ""
    typer.echo(f"{result.action}: done{phones}")


@phone_app.command("enable-pin")
@reports_errors
def phone_enable_pin(
    transport: TransportOption,
    bonds: BondsOption,
    serial: SerialArgument,
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Switch the PIN on (optional-class chargers); the link is interrupted afterwards."""
    _owner_action(transport, bonds, serial, login_file, timeout, "enable_pin")


@phone_app.command("change-pin")
@reports_errors
def phone_change_pin(
    transport: TransportOption,
    bonds: BondsOption,
    serial: SerialArgument,
    pin: Annotated[
        str | None, typer.Option(help="A new PIN of your choice; default: a fresh random one.")
    ] = None,
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Change the PIN (firmware 6.11 or higher); bonded phones keep working."""
    args = {"pin": pin} if pin else {"next_epoch": "1"}
    _owner_action(transport, bonds, serial, login_file, timeout, "change_pin", args)


@phone_app.command("devices")
@reports_errors
def phone_devices(
    transport: TransportOption,
    bonds: BondsOption,
    serial: SerialArgument,
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List the phones paired with the charger."""
    _owner_action(transport, bonds, serial, login_file, timeout, "list_phones")


@phone_app.command("remove-device")
@reports_errors
def phone_remove_device(
    transport: TransportOption,
    bonds: BondsOption,
    serial: SerialArgument,
    address: Annotated[str, typer.Argument(help="The phone's address, from `devices`.")],
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Remove a paired phone from the charger (it must pair again with the PIN)."""
    _owner_action(
        transport, bonds, serial, login_file, timeout, "remove_phone", {"address": address}
    )


@phone_app.command("invite")
@reports_errors
def phone_invite(
    serial: SerialArgument,
    email: Annotated[str, typer.Argument(help="The invited person's account e-mail.")],
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """Invite someone to use the charger; prints the code to pass on to them."""
    from chargepin.phone import fleet_flows

    code = asyncio.run(fleet_flows.invite(login_file, serial, email))
    typer.echo(f"invitation code for {email}: {code}")


@phone_app.command("invitations")
@reports_errors
def phone_invitations(serial: SerialArgument, login_file: LoginOption = DEFAULT_LOGIN) -> None:
    """List the charger's invitations not yet accepted (owner only)."""
    from chargepin.phone import fleet_flows

    pending = asyncio.run(fleet_flows.invitations(login_file, serial))
    if not pending:
        typer.echo(f"no open invitations for {serial}")
    for invitation in pending:
        typer.echo(f"{invitation['id']}  {invitation['email']}  expires {invitation['expires_at']}")


@phone_app.command("withdraw")
@reports_errors
def phone_withdraw(
    serial: SerialArgument,
    invitation_id: Annotated[
        int, typer.Argument(min=1, help="The invitation's number (`phone invitations`).")
    ],
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """Withdraw an invitation not yet accepted: its code stops working at once."""
    from chargepin.phone import fleet_flows

    withdrawn = asyncio.run(fleet_flows.withdraw(login_file, serial, invitation_id))
    typer.echo(f"invitation {withdrawn['id']} for {withdrawn['email']} withdrawn")


@phone_app.command("accept")
@reports_errors
def phone_accept(
    code: Annotated[str, typer.Argument(help="The invitation code the owner gave you.")],
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """Accept an invitation: the charger appears in your app with its PIN."""
    from chargepin.phone import fleet_flows

    membership = asyncio.run(fleet_flows.accept(login_file, code))
    typer.echo(f"you are now a {membership['role']} of {membership['serial']}")


# ------------------------------------------------------------------------------- lab


@app.command("demo")
@reports_errors
def demo() -> None:
    """Tell the whole story on a virtual radio: pairing, wrong PINs, lockout, tickets."""
    from chargepin.lab.demo import run

    raise typer.Exit(run())


@bench_app.command("pairing")
@reports_errors
def bench_pairing(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the measurements to this JSON file.")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Pairings to time (the bench's default if omitted).")
    ] = None,
    rss_pairings: Annotated[
        int | None,
        typer.Option(
            min=0, help="Pairings to run while watching memory (the bench's default if omitted)."
        ),
    ] = None,
) -> None:
    """Time pairing and bonded reconnection on the virtual radio and watch the daemon's memory."""
    from chargepin.lab.bench import run_pairing_bench

    counts = {"rounds": rounds, "rss_pairings": rss_pairings}
    raise typer.Exit(
        run_pairing_bench(json_path, **{name: n for name, n in counts.items() if n is not None})
    )


@bench_app.command("fleet")
@reports_errors
def bench_fleet(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the measurements to this JSON file.")
    ] = None,
    chargers: Annotated[
        int, typer.Option(min=1, help="Chargers to provision into the bench's SQLite database.")
    ] = 1_000_000,
    seconds: Annotated[
        float, typer.Option(min=0.01, help="Seconds of load per endpoint (split into slices).")
    ] = 5.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent client workers.")] = 8,
) -> None:
    """Time provisioning and the PIN reveal endpoint against a bare FastAPI endpoint."""
    from chargepin.lab.bench_fleet import run_fleet_bench

    raise typer.Exit(run_fleet_bench(json_path, chargers, seconds, concurrency))


def main() -> None:
    """The `chargepin` console script."""
    app()


if __name__ == "__main__":
    main()
