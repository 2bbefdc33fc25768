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

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from chargepin.core.errors import InvalidConfig
from chargepin.core.policy import FirmwareVersion
from chargepin.core.provisioning import StickerPayload
from chargepin.fleet import factory
from chargepin.fleet.db import make_engine, migrate, session_factory, transaction
from chargepin.fleet.models import Charger
from chargepin.fleet.pins import custom_pin_context, secret_context
from chargepin.fleet.settings import FleetSettings
from chargepin.fleet.vault import ENV_KEY, ENV_KEY_FILE, Vault, VaultError, key_id, load_vault

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
    """An engine on `url` with the schema migrated to the newest revision."""
    engine = make_engine(url)
    migrate(engine)
    return engine, session_factory(engine)


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


def serve(
    settings: FleetSettings, host: str, port: int, *, api: bool = True, ocpp: bool = True
) -> None:
    """Run the fleet service with uvicorn on loopback until interrupted: the API and pages
    (`api`) and the chargers' OCPP route (`ocpp`, this process then a gateway with a heartbeat:
    fleet/csms/gateways.py)."""
    import uvicorn

    from chargepin.fleet.app import create_app
    from chargepin.fleet.csms.station import MAX_FRAME

    require_loopback(host)
    if not ocpp:
        needs_postgresql(settings, "serving without OCPP (--no-ocpp)")
    if not api:
        needs_postgresql(settings, "an OCPP gateway (chargepin fleet gateway)")
    app = create_app(settings, api=api, ocpp=ocpp)
    if ocpp:
        app.router.lifespan_context = app.state.csms.lifespan
    # ws_max_size: uvicorn refuses a larger OCPP frame before assembling it (default 16 MiB).
    # ws_per_message_deflate: permessage-deflate (RFC 7692, a server may decline it) kept two
    # zlib contexts per charger, about half of the memory a connection costs (~50 of ~100 KiB),
    # to shrink OCPP-J messages of a few hundred octets (docs/DECISIONS.md, docs/PERFORMANCE.md).
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        ws_max_size=MAX_FRAME,
        ws_per_message_deflate=False,
    )


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


def rotate_key(settings: FleetSettings) -> Rotation:
    """Make a new vault key, save the key file, then re-encrypt every ciphertext in one go.

    The key file is saved first (it keeps the old keys), so a crash at any point leaves every
    ciphertext decryptable. A key from CHARGEPIN_VAULT_KEY cannot be rotated here: there is no
    file to add the new key to.
    """
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
    vault.rotate()
    vault.save(key_file)
    engine, sessions = open_database(settings.db_url)
    try:
        with transaction(sessions) as db:
            secrets_done, pins_done = reseal_all(db, vault)
    finally:
        engine.dispose()
    return Rotation(key_id(vault.current).hex(), key_file, secrets_done, pins_done)
