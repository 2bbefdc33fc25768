"""The fleet operator's commands as functions: serve, migrate, provision, sticker, rotate the key.

`chargepin fleet ...` (fleet/cli.py) only parses arguments and calls these, so the demo, the
tests and the command line run the same code.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from chargepin.core.errors import InvalidConfig
from chargepin.core.policy import FirmwareVersion
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet import factory
from chargepin.fleet.db import make_engine, migrate, session_factory, transaction
from chargepin.fleet.models import Charger
from chargepin.fleet.pins import custom_pin_context, secret_context
from chargepin.fleet.settings import HTTP_KEEP_ALIVE, FleetSettings
from chargepin.fleet.vault import ENV_KEY, ENV_KEY_FILE, Vault, VaultError, key_id, load_vault

if TYPE_CHECKING:
    from fastapi import FastAPI

    from chargepin.fleet.status import FleetStatus

ROTATION_BATCH = 2000


def require_loopback(host: str) -> str:
    """`host` if it is a loopback address, else InvalidConfig saying how to expose the service.

    The service speaks plain HTTP with bearer tokens and PINs in it: it listens on loopback
    only, and a TLS-terminating reverse proxy is what faces the network.
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidConfig(
            f"the fleet service listens on loopback only (127.0.0.1 or ::1), not {host!r}; "
            "put a TLS reverse proxy in front of it to serve other machines"
        )
    return host


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """An engine on `url` with the schema migrated to the newest revision; InvalidConfig naming
    the database (without its password) when it cannot be reached."""
    engine = make_engine(url)
    try:
        migrate(engine)
    except sa_exc.OperationalError as error:
        engine.dispose()
        raise _cannot_open(engine, error) from error
    return engine, session_factory(engine)


def _cannot_open(engine: Engine, error: sa_exc.DBAPIError) -> InvalidConfig:
    where = engine.url.render_as_string(hide_password=True)
    reason = str(error.orig or error).strip().splitlines()[0]
    return InvalidConfig(
        f"cannot open the database {where} ({reason}); check --db (CHARGEPIN_DB_URL) and "
        "that the server runs"
    )


def fleet_status(settings: FleetSettings, source_rate: int, source_window: float) -> FleetStatus:
    """The figures to watch (fleet/status.py), read from the database as it is: this command
    changes nothing, not even the schema (a database not migrated to this version's schema is
    refused, naming `chargepin fleet migrate`)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from chargepin.fleet import status
    from chargepin.fleet.csms.gateways import wall_now
    from chargepin.fleet.db import alembic_config, database_url, require_known_revision

    if source_rate < 0 or not 1 <= source_window <= 3600:
        raise InvalidConfig("--source-rate must be >= 0 and --source-window 1 to 3600 seconds")
    url = database_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise InvalidConfig(f"no fleet database at {url.database}: check --db (CHARGEPIN_DB_URL)")
    engine = make_engine(settings.db_url)
    try:
        try:
            with engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
        except sa_exc.OperationalError as error:
            raise _cannot_open(engine, error) from error
        config = alembic_config(settings.db_url)
        with engine.connect() as connection:
            require_known_revision(connection, config)
        head = ScriptDirectory.from_config(config).get_current_head()
        if current != head:
            where = engine.url.render_as_string(hide_password=True)
            raise InvalidConfig(
                f"the database {where} is at schema revision {current or 'none'}, this version "
                f"reads {head}: run `chargepin fleet migrate` (or start the service) first"
            )
        with session_factory(engine)() as db:
            return status.read(db, wall_now(), source_rate, source_window)
    finally:
        engine.dispose()


def make_admin(settings: FleetSettings, email: str) -> None:
    """Mark an existing account as a factory (admin) account, from the service's own host."""
    from sqlalchemy import update

    from chargepin.fleet.models import User

    engine, sessions = open_database(settings.db_url)
    try:
        with sessions() as db, db.begin():
            result = db.execute(
                update(User).where(User.email == email.strip().lower()).values(is_admin=True)
            )
            if not getattr(result, "rowcount", 0):
                raise InvalidConfig(f"no account {email}; register it first, then run this again")
    finally:
        engine.dispose()


def prune(settings: FleetSettings, now: float) -> dict[str, int]:
    """Delete every throttle row that decides nothing any more (fleet/pruning.py); per table,
    how many. The service does this a batch at a time on every write of such a row; this is
    for an operator who wants the tables small now (after an attack, before a backup)."""
    from chargepin.fleet import pruning

    engine, sessions = open_database(settings.db_url)
    try:
        with sessions() as db, db.begin():
            return pruning.prune_all(db, now)
    finally:
        engine.dispose()


def needs_postgresql(settings: FleetSettings, what: str) -> None:
    """Refuse a scale-out mode on SQLite (one process: nothing would wake the other one)."""
    if not settings.db_url.startswith("postgresql"):
        raise InvalidConfig(
            f"{what} needs PostgreSQL (--db postgresql+psycopg://...): OCPP gateways apart from "
            "the API are woken by PostgreSQL NOTIFY; on SQLite `chargepin fleet serve` serves "
            "OCPP itself"
        )


MAX_WORKERS = 64

APP_FACTORY = "chargepin.fleet.operations:worker_app"
"""What each of `serve --workers N`'s processes imports and calls: the app from the environment
(CHARGEPIN_DB_URL, the vault's key file or key, ENV_WORKER_OCPP), which `serve` sets for them."""

ENV_WORKER_OCPP = "CHARGEPIN_WORKER_OCPP"
"""'1' when the workers of `serve --workers N` also serve OCPP (each then a gateway), '0' not."""

ENV_WORKER_SETTINGS = "CHARGEPIN_WORKER_SETTINGS"
"""The parent's FleetSettings as JSON, for its workers: every option of `serve` (limits, pool
sizes, timeouts) reaches every worker, not only what the environment says."""


def settings_json(settings: FleetSettings) -> str:
    """`settings` as JSON (`settings_from_json` reads it back equal)."""
    import dataclasses
    import json

    return json.dumps(dataclasses.asdict(settings), default=str)


def settings_from_json(text: str) -> FleetSettings:
    """The FleetSettings of `settings_json`."""
    import json

    from chargepin.fleet.source_limits import SourceLimitSettings

    values = json.loads(text)
    limits = values.pop("source_limits")
    limits["exempt"] = tuple(limits["exempt"])
    return FleetSettings(
        **{
            **values,
            "vault_key_file": Path(values["vault_key_file"]),
            "source_limits": SourceLimitSettings(**limits),
        }
    )


def require_workers(db_url: str, workers: int) -> int:
    """`workers` when this database can serve that many processes, else InvalidConfig.

    Several API processes share nothing but the database: every throttle, lockout, outbox row
    and event is a row in it (docs/DEPLOY.md, "Workers"). SQLite is one process's database (its
    writers queue on one file lock), so more than one worker needs PostgreSQL.
    """
    if isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidConfig(f"workers must be 1 to {MAX_WORKERS}, got {workers!r}")
    if workers > 1 and not db_url.startswith("postgresql"):
        raise InvalidConfig(
            f"--workers {workers} needs PostgreSQL (--db postgresql+psycopg://...): several "
            "processes share their state through the database, and SQLite serves one process; "
            "run one worker on SQLite"
        )
    return workers


def served_app(settings: FleetSettings, *, api: bool = True, ocpp: bool = True) -> FastAPI:
    """The app one server process runs: with `ocpp`, the Hub's lifespan makes it a gateway
    with a heartbeat (fleet/csms/gateways.py)."""
    from chargepin.fleet.app import create_app

    app = create_app(settings, api=api, ocpp=ocpp)
    if ocpp:
        app.router.lifespan_context = app.state.csms.lifespan
    return app


def worker_app() -> FastAPI:
    """One worker of `serve --workers N` (uvicorn imports and calls this in each process): the
    parent's settings (ENV_WORKER_SETTINGS), else those of the environment."""
    text = os.environ.get(ENV_WORKER_SETTINGS)
    settings = settings_from_json(text) if text else FleetSettings.from_env()
    return served_app(settings, ocpp=os.environ.get(ENV_WORKER_OCPP) != "0")


def serve(
    settings: FleetSettings,
    host: str,
    port: int,
    *,
    api: bool = True,
    ocpp: bool = True,
    workers: int = 1,
) -> None:
    """Run the fleet service with uvicorn on loopback until interrupted: the API and pages
    (`api`) and the chargers' OCPP route (`ocpp`, this process then a gateway with a heartbeat:
    fleet/csms/gateways.py); `workers` API processes share the port (PostgreSQL only)."""
    import uvicorn

    from chargepin.fleet.csms.station import MAX_FRAME

    require_loopback(host)
    if not ocpp:
        needs_postgresql(settings, "serving without OCPP (--no-ocpp)")
    if not api:
        needs_postgresql(settings, "an OCPP gateway (chargepin fleet gateway)")
    require_workers(settings.db_url, workers)
    if workers > 1 and not api:
        raise InvalidConfig("--workers is for the API; start more gateways for OCPP")
    # Once, before any worker starts: the schema (the workers' own upgrades then find it
    # current; db.migrate serialises them anyway; a database that cannot be reached is one
    # line here, not a traceback per worker) and, below, the vault's key file (N workers
    # creating it at once would each make a different key and seal with it).
    engine, sessions = open_database(settings.db_url)
    try:
        vault, created = load_vault(settings.vault_key_file)
        with sessions() as db:
            require_vault_of(db, vault, _key_file(settings) if created else None)
    finally:
        engine.dispose()
    if created:
        import logging

        logging.getLogger(__name__).warning(created)
    # ws_max_size: uvicorn refuses a larger OCPP frame before assembling it (default 16 MiB).
    # ws_per_message_deflate: permessage-deflate (RFC 7692, a server may decline it) kept two
    # zlib contexts per charger, about half of the memory a connection costs (~50 of ~100 KiB),
    # to shrink OCPP-J messages of a few hundred octets (docs/DECISIONS.md, docs/PERFORMANCE.md).
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "ws_max_size": MAX_FRAME,
        "ws_per_message_deflate": False,
        "timeout_keep_alive": HTTP_KEEP_ALIVE,
    }
    if workers == 1:
        uvicorn.run(served_app(settings, api=api, ocpp=ocpp), **options)
        return
    os.environ["CHARGEPIN_DB_URL"] = settings.db_url
    os.environ[ENV_WORKER_OCPP] = "1" if ocpp else "0"
    os.environ[ENV_WORKER_SETTINGS] = settings_json(settings)
    if not os.environ.get(ENV_KEY):
        os.environ[ENV_KEY_FILE] = str(
            Path(os.environ.get(ENV_KEY_FILE) or settings.vault_key_file).absolute()
        )
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)


@dataclass(frozen=True)
class ProvisionRun:
    """What a factory run made: the chargers (with secrets) and where their files are."""

    chargers: list[factory.Provisioned]
    out: Path
    seconds: float


def provision_to_dir(
    settings: FleetSettings,
    out: Path,
    *,
    count: int,
    model: str,
    firmware: FirmwareVersion,
    produced: dt.date,
    serial_prefix: str = "CP",
) -> tuple[ProvisionRun, str | None]:
    """Create chargers and write their bundles and stickers into `out`, all or nothing.

    The files are written before the rows commit, and removed again if anything fails, so a
    run never leaves chargers without bundles (their secrets would be unusable) nor bundles
    for chargers the fleet does not know. Returns the run and the vault's first-run message.
    """
    import time

    vault, created = load_vault(settings.vault_key_file)
    engine, sessions = open_database(settings.db_url)
    written: list[Path] = []
    started = time.perf_counter()
    try:
        with transaction(sessions) as db:
            made = factory.provision(
                db,
                vault,
                count=count,
                model=model,
                firmware=firmware,
                produced=produced,
                serial_prefix=serial_prefix,
            )
            for path in factory.write_outputs(made, out):
                written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        engine.dispose()
    return ProvisionRun(made, out, time.perf_counter() - started), created


def existing_vault(settings: FleetSettings) -> Vault:
    """The service's vault (environment or key file), VaultError if there is none yet: a key
    made up here would key records the service cannot verify."""
    if os.environ.get(ENV_KEY):
        return load_vault(settings.vault_key_file)[0]
    key_file = Path(os.environ.get(ENV_KEY_FILE) or settings.vault_key_file)
    if not key_file.exists():
        raise VaultError(
            f"no vault key file at {key_file}; give the one the service uses with --vault-key-file"
        )
    return Vault.load_file(key_file)


def reprint_sticker(settings: FleetSettings, serial: str, out: Path | None) -> StickerPayload:
    """A new sticker for an unclaimed charger (new claim code; the old sticker stops working).

    Only the claim code's keyed digest is stored, so a sticker can be shown again only by
    issuing a new code; the digest is keyed with the service's vault (fleet/claims.py), so this
    needs the service's key, never a new one. With `out`, the SVG and PNG files are written too.
    """
    vault = existing_vault(settings)
    engine, sessions = open_database(settings.db_url)
    try:
        with transaction(sessions) as db:
            payload = factory.reissue_claim_code(db, vault, serial)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                factory.write_sticker(payload, out)
    finally:
        engine.dispose()
    return payload


@dataclass(frozen=True)
class Rotation:
    """The outcome of a key rotation: the new key's id and how many ciphertexts were re-sealed."""

    key_id: str
    key_file: Path
    secrets: int
    custom_pins: int


def reseal_all(db: Session, vault: Vault) -> tuple[int, int]:
    """Re-encrypt every charger secret and custom PIN not sealed with the current key.

    Walks the table by id in batches, so a million chargers need neither a million round trips
    nor all rows in memory. Returns (secrets, custom PINs) re-sealed.
    """
    secrets_done = pins_done = 0
    last_id = 0
    while True:
        rows = db.execute(
            select(Charger.id, Charger.serial, Charger.secret_ct, Charger.custom_pin_ct)
            .where(Charger.id > last_id)
            .order_by(Charger.id)
            .limit(ROTATION_BATCH)
        ).all()
        if not rows:
            return secrets_done, pins_done
        changes = []
        for row_id, serial, secret_ct, custom_ct in rows:
            change: dict[str, object] = {}
            if vault.needs_rotation(secret_ct):
                context = secret_context(serial)
                change["secret_ct"] = vault.seal(vault.open(secret_ct, context), context)
                secrets_done += 1
            if custom_ct is not None and vault.needs_rotation(custom_ct):
                context = custom_pin_context(serial)
                change["custom_pin_ct"] = vault.seal(vault.open(custom_ct, context), context)
                pins_done += 1
            if change:
                changes.append({"id": row_id, **change})
        if changes:
            db.execute(update(Charger), changes)
        last_id = rows[-1][0]


def _key_file(settings: FleetSettings) -> Path:
    """The key file `load_vault` reads (or creates) for these settings."""
    return Path(os.environ.get(ENV_KEY_FILE) or settings.vault_key_file)


def require_vault_of(db: Session, vault: Vault, created: Path | None) -> None:
    """VaultError, before anything is served, when the vault is not this database's: its newest
    charger secret is sealed with a key the keyring lacks (a restored backup started with
    another host's key file, or with a key file made afresh because none was restored). Left to
    the requests, every PIN reveal and OCPP login would fail one by one while new chargers were
    sealed with the wrong key."""
    sealed = db.scalar(select(Charger.secret_ct).order_by(Charger.id.desc()).limit(1))
    missing = None if sealed is None else vault.sealed_with(sealed)
    if missing is None:
        return
    where, made = vault.source, ""
    if created is not None:  # it sealed nothing yet: leave no key file that is not this fleet's
        created.unlink(missing_ok=True)
        where, made = str(created), " (made just now, as there was none: removed again)"
    raise VaultError(
        f"the database's charger secrets are sealed with vault key {missing}, which the vault "
        f"key in {where}{made} does not hold: start the service with the key file that "
        "belongs to this database (restore it from where it was kept apart from the database "
        "backups); without it no PIN or charger secret in this database can be opened"
    )


def rotate_key(settings: FleetSettings, *, new_key: bool = True, reseal: bool = True) -> Rotation:
    """Make a new vault key, save the key file, then re-encrypt every ciphertext in one go.

    The key file is saved first (it keeps the old keys), so a crash at any point leaves every
    ciphertext decryptable. A key from CHARGEPIN_VAULT_KEY cannot be rotated here: there is no
    file to add the new key to. On several hosts (each with its own copy of the key file) the
    two steps run apart: `new_key` alone, the file copied to every host, then `reseal` alone,
    so no process meets a ciphertext under a key its host's file lacks (docs/DEPLOY.md).
    """
    if not (new_key or reseal):
        raise InvalidConfig("--no-reseal and --reseal-only together would do nothing")
    if os.environ.get(ENV_KEY):
        raise VaultError(
            f"the vault key comes from {ENV_KEY}, which cannot hold a keyring; move it to a key "
            "file (--vault-key-file) and unset the variable, then rotate"
        )
    key_file = Path(os.environ.get(ENV_KEY_FILE) or settings.vault_key_file)
    if not key_file.exists():
        raise VaultError(
            f"no vault key file at {key_file}; give the one the service uses with --vault-key-file"
        )
    vault, _ = load_vault(key_file)
    if new_key:
        vault.rotate()
        vault.save(key_file)
    if not reseal:
        return Rotation(key_id(vault.current).hex(), key_file, 0, 0)
    engine, sessions = open_database(settings.db_url)
    try:
        with transaction(sessions) as db:
            secrets_done, pins_done = reseal_all(db, vault)
    finally:
        engine.dispose()
    return Rotation(key_id(vault.current).hex(), key_file, secrets_done, pins_done)
