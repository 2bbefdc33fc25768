"""`chargepin fleet ...`: run the fleet service, migrate it, the factory, stickers, key rotation.

Thin: each command parses its options and calls one function of `chargepin.fleet.operations`. The
web stack (FastAPI, SQLAlchemy, segno) is imported inside the commands, so `chargepin --help`
and the charger's commands stay quick.
"""

from __future__ import annotations

import datetime
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from chargepin.cli_errors import reports_errors
from chargepin.core.policy import FirmwareVersion

if TYPE_CHECKING:
    from chargepin.fleet.settings import FleetSettings


fleet_app = typer.Typer(
    help="The fleet service: serve, migrate, provision chargers, stickers, vault key rotation.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CHARGEPIN_DB_URL",
        help="Database URL (default: sqlite:///chargepin-fleet.db; or postgresql+psycopg://...).",
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--vault-key-file",
        help="The vault's key file (default: chargepin-vault-key.json, created on first run).",
    ),
]


def _settings(db: str | None, vault_key_file: Path | None = None) -> FleetSettings:
    from chargepin.fleet.settings import FleetSettings

    return FleetSettings.from_env(db_url=db, vault_key_file=vault_key_file)


PasswordHashingChoice = Literal["default", "minimum"]
"""The names of fleet/security.py's PASSWORD_HASHING (that module loads argon2, which --help
need not; a test checks the two agree)."""


def _option(name: str, annotation: object, default: object) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


SERVICE_OPTIONS = (
    _option(
        "source_header",
        Annotated[
            str | None,
            typer.Option(
                envvar="CHARGEPIN_SOURCE_HEADER",
                help="The header the proxy in front sets to the client's address, e.g. "
                "X-Forwarded-For (its last entry counts); default none: the peer's address. "
                "The per-source limits and the login and claim throttles count it.",
            ),
        ],
        None,
    ),
    _option(
        "source_rate",
        Annotated[
            int, typer.Option(min=0, help="Requests per source per window (0: no rate limit).")
        ],
        600,
    ),
    _option(
        "source_window",
        Annotated[float, typer.Option(min=1, max=3600, help="The rate limit's window in seconds.")],
        60.0,
    ),
    _option(
        "source_in_flight",
        Annotated[
            int, typer.Option(min=0, help="HTTP requests in progress per source per process.")
        ],
        32,
    ),
    _option(
        "source_sockets",
        Annotated[int, typer.Option(min=0, help="Open OCPP WebSockets per source per process.")],
        1000,
    ),
    _option(
        "source_exempt",
        Annotated[
            list[str] | None,
            typer.Option(help="A network never limited (repeatable; default loopback)."),
        ],
        None,
    ),
    _option(
        "db_pool_size",
        Annotated[int, typer.Option(min=1, help="Pooled database connections kept open.")],
        5,
    ),
    _option(
        "db_max_overflow",
        Annotated[int, typer.Option(min=0, help="Connections opened beyond the pool under load.")],
        10,
    ),
    _option(
        "db_pool_timeout",
        Annotated[
            float,
            typer.Option(min=0.1, help="Seconds a request waits for a connection (then 503)."),
        ],
        30.0,
    ),
    _option(
        "db_statement_timeout",
        Annotated[
            float,
            typer.Option(min=0.1, help="Seconds a PostgreSQL statement may run (then 503)."),
        ],
        30.0,
    ),
    _option(
        "password_hashing",
        Annotated[
            PasswordHashingChoice,
            typer.Option(
                help="The argon2id cost of new password hashes: default (64 MiB, 3 passes, 4 "
                "lanes) or minimum (OWASP's least: 19 MiB, 2 passes, 1 lane; small hardware, "
                "docs/DEPLOY.md). Stored hashes keep working; each is rehashed to this one at "
                "its account's next login.",
            ),
        ],
        "default",
    ),
)
"""The options of every process of the service, `fleet serve` and `fleet gateway` alike: the
per-source limits, the database pool (docs/DEPLOY.md, "Limits") and the password hashing.
Defined once here and added to each command by `service_options`."""

R = TypeVar("R")


def service_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give `command` the SERVICE_OPTIONS: it takes them as one dict, its `service` argument.

    Typer reads a command's options off its signature: this one shows the command's own
    parameters followed by the shared ones, so both commands list them in --help and neither
    copies them."""
    return _with_options(command, SERVICE_OPTIONS)


def service_options_named(*names: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """`service_options` with only the options `names` (a command that must know what the
    services were told, such as `fleet status` their rate limit, takes their very options)."""
    chosen = tuple(p for p in SERVICE_OPTIONS if p.name in names)
    if len(chosen) != len(names):
        raise ValueError(f"not service options: {sorted(set(names) - {p.name for p in chosen})}")
    return lambda command: _with_options(command, chosen)


def _with_options(
    command: Callable[..., R], options: tuple[inspect.Parameter, ...]
) -> Callable[..., R]:
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "service"
    ]
    names = [p.name for p in options]

    def wrapper(*args: Any, **kwargs: Any) -> R:
        service = {name: kwargs.pop(name) for name in names if name in kwargs}
        return command(*args, service=service, **kwargs)

    parameters = [*own, *options]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    wrapper.__name__ = command.__name__
    wrapper.__qualname__ = command.__qualname__
    wrapper.__doc__ = command.__doc__
    return wrapper


def _service_settings(
    db: str | None, vault_key_file: Path | None, service: dict[str, Any], **more: Any
) -> FleetSettings:
    """The settings of a process of the service, from its options (SERVICE_OPTIONS)."""
    import dataclasses

    from chargepin.fleet.source_limits import LOOPBACK, SourceLimitSettings

    exempt = service["source_exempt"]
    limits = SourceLimitSettings(
        rate=service["source_rate"],
        window=service["source_window"],
        in_flight=service["source_in_flight"],
        sockets=service["source_sockets"],
        header=service["source_header"] or None,
        exempt=tuple(exempt) if exempt is not None else LOOPBACK,
    )
    return dataclasses.replace(
        _settings(db, vault_key_file),
        source_limits=limits,
        db_pool_size=service["db_pool_size"],
        db_max_overflow=service["db_max_overflow"],
        db_pool_timeout=service["db_pool_timeout"],
        db_statement_timeout=service["db_statement_timeout"],
        password_hashing=service["password_hashing"],
        **more,
    )


@fleet_app.command("serve")
@reports_errors
@service_options
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    vault_key_file: KeyFileOption = None,
    ocpp: Annotated[
        bool,
        typer.Option(
            "--ocpp/--no-ocpp",
            help="Also serve the chargers' OCPP WebSockets (/ocpp/{serial}); --no-ocpp leaves "
            "them to `chargepin fleet gateway` processes (PostgreSQL only).",
        ),
    ] = True,
    outbox_max_open: Annotated[
        int, typer.Option(min=1, help="Open commands one charger may have queued.")
    ] = 20,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (more than 1 needs PostgreSQL).",
        ),
    ] = 1,
    *,
    service: dict[str, Any],
) -> None:
    """Serve the fleet API (OpenAPI at /docs), the app (/app/) and the chargers' OCPP route on
    loopback; migrations apply on start. The limits that protect it: docs/FLEET.md, "Limits
    that protect the service"."""
    from chargepin.fleet import operations

    operations.require_loopback(host)
    settings = _service_settings(db, vault_key_file, service, outbox_max_open=outbox_max_open)
    operations.require_workers(settings.db_url, workers)
    operations.serve(settings, host, port, ocpp=ocpp, workers=workers)


@fleet_app.command("gateway")
@reports_errors
@service_options
def gateway(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")],
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    vault_key_file: KeyFileOption = None,
    *,
    service: dict[str, Any],
) -> None:
    """Serve only the chargers' OCPP WebSockets (/ocpp/{serial}), no API or pages: any number of
    gateways on one PostgreSQL database, each woken by NOTIFY for the commands of its chargers
    (docs/OCPP.md, "Gateways"). The limits are those of `fleet serve`."""
    from chargepin.fleet import operations

    operations.require_loopback(host)
    operations.serve(_service_settings(db, vault_key_file, service), host, port, api=False)


@fleet_app.command("migrate")
@reports_errors
def migrate(db: DbOption = None) -> None:
    """Bring the database schema to the newest revision (idempotent)."""
    from chargepin.fleet import operations

    settings = _settings(db)
    engine, _ = operations.open_database(settings.db_url)
    engine.dispose()
    typer.echo(f"database {engine.url.render_as_string(hide_password=True)} is up to date")


@fleet_app.command("status")
@reports_errors
@service_options_named("source_rate", "source_window")
def status(
    service: dict[str, Any],
    db: DbOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object instead of lines.")
    ] = False,
) -> None:
    """The figures to watch, from the database (any host, changes nothing): gateways and their
    heartbeats, chargers per gateway, the outbox's oldest waiting command, security events per
    minute, sources over the rate, PostgreSQL's connections (docs/DEPLOY.md, "What to watch").

    --source-rate and --source-window: the values the services were given (the same options
    as theirs, defaults included), to count the sources over the rate."""
    import json

    from chargepin.fleet import operations
    from chargepin.fleet import status as fleet_status

    figures = operations.fleet_status(
        _settings(db), service["source_rate"], service["source_window"]
    )
    if as_json:
        typer.echo(json.dumps(figures.to_json(), indent=2))
    else:
        typer.echo("\n".join(fleet_status.lines(figures)))


@fleet_app.command("provision")
@reports_errors
def provision(
    count: Annotated[int, typer.Option(min=1, help="How many chargers to make.")],
    model: Annotated[str, typer.Option(help='Model name, e.g. "Pulsar Max".')],
    firmware: Annotated[str, typer.Option(help="Firmware version, e.g. 6.11.2.")],
    produced: Annotated[
        datetime.datetime,
        typer.Option(formats=["%Y-%m-%d"], help="Production date, YYYY-MM-DD."),
    ],
    out: Annotated[
        Path, typer.Option(help="Directory for the bundles (<serial>.json) and stickers.")
    ],
    serial_prefix: Annotated[
        str, typer.Option(help="Serial prefix, 1-8 letters A-Z (serials: CP00000001...).")
    ] = "CP",
    db: DbOption = None,
    vault_key_file: KeyFileOption = None,
) -> None:
    """Create chargers with fresh secrets; write one bundle and one sticker (SVG, PNG) each."""
    from chargepin.fleet import operations

    run, created = operations.provision_to_dir(
        _settings(db, vault_key_file),
        out,
        count=count,
        model=model,
        firmware=FirmwareVersion.parse(firmware),
        produced=produced.date(),
        serial_prefix=serial_prefix,
    )
    if created:
        typer.echo(created, err=True)
    first, last = run.chargers[0], run.chargers[-1]
    typer.echo(
        f"provisioned {len(run.chargers)} {model} chargers {first.serial}..{last.serial} "
        f"(firmware {firmware}, PIN {first.policy.mode.value}) in {run.seconds:.1f} s; "
        f"bundles and stickers in {out}"
    )


@fleet_app.command("sticker")
@reports_errors
def sticker(
    serial: Annotated[str, typer.Argument(help="The charger's serial.")],
    db: DbOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write <serial>.svg and <serial>.png here.")
    ] = None,
    vault_key_file: KeyFileOption = None,
) -> None:
    """Show a new sticker for an unclaimed charger as a QR code (the previous one stops working)."""
    import segno

    from chargepin.fleet import operations

    payload = operations.reprint_sticker(_settings(db, vault_key_file), serial, out)
    segno.make(payload.encode(), error="m").terminal(out=sys.stdout, compact=True)
    typer.echo(payload.encode())
    typer.echo(f"a new claim code was issued for {serial}; earlier stickers no longer work")


@fleet_app.command("make-admin")
@reports_errors
def make_admin(
    email: Annotated[str, typer.Argument(help="The account that the factory line uses.")],
    db: DbOption = None,
) -> None:
    """Let an account call the factory API (POST /factory/chargers): run on the service's host."""
    from chargepin.fleet import operations

    operations.make_admin(_settings(db), email)
    typer.echo(f"{email} is now a factory (admin) account")


@fleet_app.command("prune")
@reports_errors
def prune(db: DbOption = None) -> None:
    """Delete login-throttle and claim-source rows that no longer decide anything."""
    from chargepin.clock import SystemClock
    from chargepin.fleet import operations

    counts = operations.prune(_settings(db), SystemClock().now())
    done = ", ".join(f"{count} from {table}" for table, count in counts.items())
    typer.echo(f"pruned {done}")


@fleet_app.command("rotate-key")
@reports_errors
def rotate_key(
    db: DbOption = None,
    vault_key_file: KeyFileOption = None,
    no_reseal: Annotated[
        bool,
        typer.Option(
            "--no-reseal",
            help="Only add the new key to the key file (then copy it to every host).",
        ),
    ] = False,
    reseal_only: Annotated[
        bool,
        typer.Option(
            "--reseal-only",
            help="Only re-encrypt what is not under the key file's current key.",
        ),
    ] = False,
) -> None:
    """Make a new vault key and re-encrypt every charger secret and custom PIN with it; on
    several hosts in two steps, --no-reseal then --reseal-only (docs/DEPLOY.md, "The vault
    key")."""
    from chargepin.fleet import operations

    rotation = operations.rotate_key(
        _settings(db, vault_key_file), new_key=not reseal_only, reseal=not no_reseal
    )
    if no_reseal:
        typer.echo(
            f"vault key {rotation.key_id} is current in {rotation.key_file}; nothing was "
            "re-encrypted: copy this key file to every host, then run rotate-key --reseal-only"
        )
        return
    typer.echo(
        f"vault key {rotation.key_id} is current (saved in {rotation.key_file}); re-encrypted "
        f"{rotation.secrets} secrets and {rotation.custom_pins} custom PINs; a running service "
        "picks the new key up from the key file by itself"
    )
