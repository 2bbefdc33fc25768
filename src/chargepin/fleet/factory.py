"""The factory: charger records with fresh secrets, their provisioning bundles and stickers.

`provision` is what the end-of-line process (and `chargepin fleet provision`) calls: it creates
the chargers in the fleet database with a vaulted 32-byte secret, a serial and a one-time claim
code (only its keyed digest is kept, fleet/claims.py), with the PIN on or off as the vendor's
policy says. The secret and the claim code leave it once, in the returned values, for the
bundle and the sticker (`write_outputs`). Rows are written in batches and committed once by the
caller, because a factory run of a million chargers must not pay for one round trip and one fsync
per charger (docs/PERFORMANCE.md): bulk INSERTs on SQLite, `COPY ... FROM STDIN` on PostgreSQL
(psycopg 3's `cursor.copy()`, one stream per batch on the session's own connection, so inside
the caller's transaction: a run that dies half-way leaves no charger, see docs/DEPLOY.md).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segno
from sqlalchemy import false, func, insert, literal_column, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from chargepin.core.errors import InvalidConfig, ProvisioningRefused
from chargepin.core.keys import new_secret
from chargepin.core.policy import FirmwareVersion, PinMode, PinPolicy, pin_policy
from chargepin.core.provisioning import ProvisioningBundle, StickerPayload, new_claim_code
from chargepin.fleet.claims import code_digest, code_digester
from chargepin.fleet.db import refusal
from chargepin.fleet.errors import Conflict, ServiceBusy
from chargepin.fleet.models import Charger
from chargepin.fleet.pins import secret_context
from chargepin.fleet.vault import Vault

SERIAL_DIGITS = 8
"""Serials are the prefix and a zero-padded sequence number: CP00000001."""

PREFIX_RE = re.compile(r"[A-Z]{1,8}", re.ASCII)
"""A serial prefix is upper-case letters only, so prefix + digits never collides with another."""

BATCH = 5000
"""Rows per bulk INSERT: large enough to amortise, small enough for PostgreSQL's parameter cap."""

MAX_COUNT = 10_000_000

_INSERT = insert(Charger.metadata.tables[Charger.__tablename__]).values(
    claim_lockout=literal_column("'{}'")
)
"""A Core executemany INSERT: the ORM's per-row bookkeeping and JSON encoding of the (empty)
claim lockout cost more than the encryption at a million rows."""

_COPY_COLUMNS = (
    "serial",
    "model",
    "firmware",
    "produced",
    "secret_ct",
    "claim_code_hash",
    "pin_enabled",
    "epoch",
    "created_at",
)
"""The columns a batch's rows hold, in order; both paths add the (empty) claim lockout."""

_COPY = f"COPY {Charger.__tablename__} ({', '.join(_COPY_COLUMNS)}, claim_lockout) FROM STDIN"
"""PostgreSQL's bulk load: the rows of `_INSERT` with the same columns and values, streamed.
The other columns take their defaults as with the INSERT (generation's server default 0, NULLs)."""


@dataclass(frozen=True)
class Provisioned:
    """One charger just made: what its bundle and sticker need (secret and code masked in repr)."""

    serial: str
    model: str
    firmware: FirmwareVersion
    produced: dt.date
    policy: PinPolicy
    secret: bytes = field(repr=False)
    claim_code: str = field(repr=False)

    @property
    def bundle(self) -> ProvisioningBundle:
        return ProvisioningBundle(
            self.serial, self.model, self.firmware, self.produced, self.secret
        )

    @property
    def sticker(self) -> StickerPayload:
        return StickerPayload(self.serial, self.claim_code)


def next_serial_number(db: Session, prefix: str) -> int:
    """The first free sequence number for `prefix` (1 for a new prefix).

    Two concurrent runs with the same prefix would pick the same numbers; the unique index on
    the serial makes the second fail as a whole instead of creating duplicates.
    """
    candidates = db.scalars(
        select(Charger.serial)
        .where(Charger.serial.like(prefix + "_" * SERIAL_DIGITS))
        .order_by(Charger.serial.desc())
        .limit(100)
    )
    for serial in candidates:
        suffix = serial[len(prefix) :]
        if suffix.isdigit():
            return int(suffix) + 1
    return 1


def claim_run(db: Session, prefix: str) -> None:
    """Make this transaction the one provisioning run of `prefix`, or Conflict saying why.

    Two runs with one prefix pick the same serials; the unique index would make the second wait
    for the first's commit (up to the lock timeout, a factory run may take longer) and then fail
    on a constraint. On PostgreSQL a transaction-scoped advisory lock per prefix refuses the
    second at once; runs of other prefixes go on side by side. SQLite has one writer: the run
    takes the write lock before it reads the serials (an UPDATE of no row), so a second run
    waits for the first's commit and continues its serials, or, past the busy timeout, is
    refused the same way. Either lock ends with the transaction.
    """
    if db.get_bind().dialect.name != "postgresql":
        try:
            db.execute(update(Charger).where(false()).values(epoch=Charger.epoch))
        except OperationalError as error:
            if not isinstance(refusal(error), ServiceBusy):
                raise
            raise Conflict(
                "another writer (a provisioning run?) held the database past the lock timeout; "
                "try again when it has finished",
                code="provisioning_in_progress",
            ) from error
        return
    key = func.hashtext(f"chargepin/provision/{prefix}")
    if not db.scalar(select(func.pg_try_advisory_xact_lock(key))):
        raise Conflict(
            f"another provisioning run with serial prefix {prefix} is in progress; wait for it "
            "to finish (its serials come first), or use another prefix",
            code="provisioning_in_progress",
        )


def provision(
    db: Session,
    vault: Vault,
    *,
    count: int,
    model: str,
    firmware: FirmwareVersion,
    produced: dt.date,
    serial_prefix: str = "CP",
    now: dt.datetime | None = None,
) -> list[Provisioned]:
    """Create `count` chargers (not committed: the caller's transaction decides).

    The PIN class comes from core.policy: mandatory chargers start with the PIN on, optional ones
    with it off until the owner enables it; firmware without PIN support is refused with the
    policy's reason, since a charger shipped that way could never be protected.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidConfig(f"count must be 1 to {MAX_COUNT:,} chargers, got {count!r}")
    if not PREFIX_RE.fullmatch(serial_prefix):
        raise InvalidConfig(
            f"serial prefix {serial_prefix!r} must be 1 to 8 upper-case letters A-Z, e.g. CP"
        )
    if not model.strip():
        raise InvalidConfig("model must be a name like 'Pulsar Max'")
    policy = pin_policy(model, firmware, produced)
    if policy.mode is PinMode.UNSUPPORTED:
        raise ProvisioningRefused(f"cannot provision {model} on {firmware}: {policy.reason}")
    created_at = now or dt.datetime.now(dt.UTC)
    claim_run(db, serial_prefix)
    first = next_serial_number(db, serial_prefix)
    if first + count - 1 >= 10**SERIAL_DIGITS:
        raise InvalidConfig(
            f"serial prefix {serial_prefix} has no room for {count:,} more chargers; "
            "choose another prefix"
        )
    pin_enabled = policy.mode is PinMode.MANDATORY
    claim_digest = code_digester(vault)
    write = _copy_rows if db.get_bind().dialect.name == "postgresql" else _insert_rows
    firmware_text = str(firmware)
    made: list[Provisioned] = []
    for start in range(first, first + count, BATCH):
        rows: list[tuple[Any, ...]] = []
        for number in range(start, min(start + BATCH, first + count)):
            serial = f"{serial_prefix}{number:0{SERIAL_DIGITS}d}"
            secret = new_secret()
            code = new_claim_code()
            rows.append(
                (
                    serial,
                    model,
                    firmware_text,
                    produced,
                    vault.seal(secret, secret_context(serial)),
                    claim_digest(serial, code),
                    pin_enabled,
                    0,
                    created_at,
                )
            )
            made.append(Provisioned(serial, model, firmware, produced, policy, secret, code))
        write(db, rows)
    return made


def _insert_rows(db: Session, rows: list[tuple[Any, ...]]) -> None:
    """One batch as a bulk INSERT (SQLite, or any database without COPY)."""
    db.execute(_INSERT, [dict(zip(_COPY_COLUMNS, row, strict=True)) for row in rows])


def _copy_rows(db: Session, rows: list[tuple[Any, ...]]) -> None:
    """One batch streamed with COPY on the session's connection (so in its transaction)."""
    driver = db.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(_COPY) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row((*row, "{}"))


def reissue_claim_code(db: Session, vault: Vault, serial: str) -> StickerPayload:
    """A new claim code for an unclaimed charger (a reprinted sticker); the old one stops working.

    Only the code's hash is stored, so a sticker cannot be printed twice with the same code.
    """
    charger = db.scalar(select(Charger).where(Charger.serial == serial).with_for_update())
    if charger is None:
        raise InvalidConfig(f"no charger {serial} in this fleet database; check the serial")
    if charger.claimed_at is not None:
        raise InvalidConfig(
            f"{serial} already has an owner, so its claim code is used up; "
            "the owner invites further users from the app"
        )
    code = new_claim_code()
    charger.claim_code_hash = code_digest(vault, serial, code)
    return StickerPayload(serial, code)


def write_sticker(payload: StickerPayload, out: Path) -> list[Path]:
    """The sticker's QR code as `<serial>.svg` and `<serial>.png` in `out`."""
    qr = segno.make(payload.encode(), error="m")
    svg = out / f"{payload.serial}.svg"
    png = out / f"{payload.serial}.png"
    qr.save(str(svg), scale=4, border=4)
    qr.save(str(png), scale=8, border=4)
    return [svg, png]


def write_bundle(bundle: ProvisioningBundle, out: Path) -> Path:
    """The bundle as `<serial>.json` in `out`, readable by its owner only (it holds the secret)."""
    path = out / f"{bundle.serial}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(bundle.to_json())
    return path


def write_outputs(chargers: Sequence[Provisioned], out: Path) -> Iterator[Path]:
    """Write every charger's bundle and sticker into `out`; yields each file written."""
    out.mkdir(parents=True, exist_ok=True)
    for charger in chargers:
        yield write_bundle(charger.bundle, out)
        yield from write_sticker(charger.sticker, out)
