"""`chargepin phone ...`: a phone's Bluetooth flows and its fleet-service flows (the app's).

Thin: each command parses its options and calls one flow of `chargepin.phone.flows` (Bluetooth)
or `chargepin.phone.fleet_flows` (the fleet service, through httpx), imported by the command
that needs it, and prints the outcome.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chargepin.cli_errors import reports_errors
from chargepin.core.errors import format_duration
from chargepin.core.protocol import (
    MAX_CURRENT_A,
    MIN_CURRENT_A,
    ChargerStatus,
    ChargingState,
    OpenInfo,
)

if TYPE_CHECKING:
    from chargepin.phone import FoundCharger
    from chargepin.phone.flows import PhoneOptions

phone_app = typer.Typer(
    help="A phone: find, pair, read and control chargers.", no_args_is_help=True
)

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


def _describe_info(info: OpenInfo) -> str:
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


@phone_app.command("logout")
@reports_errors
def phone_logout(
    everywhere: Annotated[
        bool, typer.Option(help="End every login of the account (a lost or stolen phone).")
    ] = False,
    login_file: LoginOption = DEFAULT_LOGIN,
) -> None:
    """End the fleet login on the service and forget it here."""
    from chargepin.phone import fleet_flows

    ended = asyncio.run(fleet_flows.logout(login_file, everywhere))
    typer.echo(f"logged out ({ended} login{'s' if ended != 1 else ''} ended); {login_file} removed")


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


def _plain_owner_command(name: str, summary: str, action: str) -> None:
    """Register `chargepin phone NAME`: the owner action `action`, with no arguments."""

    def command(
        transport: TransportOption,
        bonds: BondsOption,
        serial: SerialArgument,
        login_file: LoginOption = DEFAULT_LOGIN,
        timeout: TimeoutOption = 5.0,
    ) -> None:
        _owner_action(transport, bonds, serial, login_file, timeout, action)

    command.__doc__ = summary
    command.__name__ = f"phone_{name.replace('-', '_')}"
    phone_app.command(name)(reports_errors(command))


_plain_owner_command(
    "enable-pin",
    "Switch the PIN on (optional-class chargers); the link is interrupted afterwards.",
    "enable_pin",
)


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


_plain_owner_command("devices", "List the phones paired with the charger.", "list_phones")


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


@phone_app.command("members")
@reports_errors
def phone_members(serial: SerialArgument, login_file: LoginOption = DEFAULT_LOGIN) -> None:
    """List the charger's members, revoked ones included (owner only)."""
    from chargepin.phone import fleet_flows

    for member in asyncio.run(fleet_flows.members(login_file, serial)):
        state = "revoked" if member["revoked"] else "active"
        phones = ", ".join(member["phones"]) or "no phones"
        typer.echo(f"{member['user_id']}  {member['email']}  {member['role']}  {state}  ({phones})")


_plain_owner_command(
    "rekey",
    "Move the charger to a PIN sequence nobody has seen (after a revocation, or a leak).",
    "rekey",
)


@phone_app.command("revoke")
@reports_errors
def phone_revoke(
    serial: SerialArgument,
    user_id: Annotated[int, typer.Argument(min=1, help="The member's user id (`phone members`).")],
    transport: Annotated[
        str | None,
        typer.Option(
            help="The radio, when the phone is near the charger: then the member's phones are "
            "removed from it and the charger re-keyed at once."
        ),
    ] = None,
    bonds: Annotated[
        Path | None,
        typer.Option(envvar="CHARGEPIN_BONDS", help="The phone's bonds (with --transport)."),
    ] = None,
    rekey: Annotated[
        bool,
        typer.Option(help="Re-key when the fleet offers it (the member saw PINs of this charger)."),
    ] = True,
    login_file: LoginOption = DEFAULT_LOGIN,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Revoke a member: at the fleet at once; near the charger, their phones and the PIN too."""
    from chargepin.phone import fleet_flows

    if transport is not None and bonds is None:
        raise typer.BadParameter("--transport needs --bonds (the phone's bonds file)")
    options = None if transport is None or bonds is None else _options(transport, bonds, timeout)
    done = asyncio.run(fleet_flows.revoke(login_file, options, serial, user_id, rekey))
    typer.echo(f"{done.email}: revoked at the fleet")
    if not done.at_charger:
        typer.echo(
            "near the charger, run this again with --transport to remove their phones"
            + (" and re-key it (they saw its PIN)" if done.rekey_offered else "")
        )
        return
    for address in done.phones_removed:
        typer.echo(f"phone {address}: removed from the charger")
    for address in done.phones_not_paired:
        typer.echo(f"phone {address}: not paired with the charger (nothing to remove)")
    if done.rekeyed:
        typer.echo("re-keyed: the charger uses a PIN nobody has seen; Charger Info shows it")
    elif done.rekey_offered:
        typer.echo("not re-keyed: they still know PINs of this charger (`phone rekey` to do it)")


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


@phone_app.command("audit")
@reports_errors
def phone_audit(serial: SerialArgument, login_file: LoginOption = DEFAULT_LOGIN) -> None:
    """Who saw the PIN: every reveal, newest first, back to the first (owner only)."""
    from chargepin.phone import fleet_flows

    reveals = asyncio.run(fleet_flows.audit(login_file, serial))
    if not reveals:
        typer.echo(f"nobody has seen the PIN of {serial} yet")
    for reveal in reveals:
        typer.echo(
            f"{reveal['at']}  {reveal['email']}  epoch {reveal['epoch']}  "
            f"app {reveal['app_version']}"
        )


@phone_app.command("events")
@reports_errors
def phone_events(serial: SerialArgument, login_file: LoginOption = DEFAULT_LOGIN) -> None:
    """What members' phones reported about the charger, newest first (owner only)."""
    from chargepin.phone import fleet_flows

    reported = asyncio.run(fleet_flows.events(login_file, serial))
    if not reported:
        typer.echo(f"no security events reported for {serial}")
    for event in reported:
        typer.echo(f"{event['at']}  user {event['user_id']}  {event['kind']}  {event['detail']}")


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
