"""The charger's durable state: one SQLite file, the single owner of everything that must survive.

Identity, factory secret, PIN configuration and epoch, lockout state, the event log and the bonds
live in one database (WAL), so a power cut at any instant leaves the state of one commit and never
a mix of two (DESIGN.md, "State on the charger"): the last one, or for a success (a bond, its
`pairing_ok` event) possibly one before it, since those commit without an fsync
(core.durability; docs/SECURITY.md, "Durability of the pairing path"). Nothing is kept in
memory except the identity and the secret, which never change after provisioning: every other
value is read from SQLite when asked and written through at once, so there is no second copy
that could diverge from the file.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from chargepin.charger.errors import StateError
from chargepin.core import csms_auth, durability, ocpp_events
from chargepin.core.addresses import static_address_problem
from chargepin.core.applied_ops import AppliedOps
from chargepin.core.durability import Durability
from chargepin.core.errors import InvalidConfig
from chargepin.core.events import EventKind
from chargepin.core.keys import SECRET_SIZE
from chargepin.core.limits import MAX_EPOCH, MAX_GENERATION, check_generation, serial_problem
from chargepin.core.lockout import LockoutConfig, LockoutState
from chargepin.core.ocpp_events import EventFacts, SecurityEvent
from chargepin.core.pin import Pin
from chargepin.core.pin_state import PinState
from chargepin.core.policy import FirmwareVersion
from chargepin.core.profiles import ProfileName, profile_name
from chargepin.radio.keystore import DAMAGED_VALUE, SqliteKeyStore, synchronous

SCHEMA_VERSION: Final = 4
"""PRAGMA user_version of the database this module reads and writes."""

_OCPP_QUEUE_TABLE: Final = """CREATE TABLE ocpp_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        first_at REAL NOT NULL,
        type TEXT NOT NULL,
        info TEXT NOT NULL,
        storm_key TEXT,
        count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1))"""
"""Security events for the CSMS, oldest first; AUTOINCREMENT: an id (eventId) is never reused."""

_CSMS_CREDENTIALS_TABLE: Final = """CREATE TABLE csms_credentials (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        password TEXT NOT NULL)"""
"""The Basic auth password a CSMS set (SecurityCtrlr.BasicAuthPassword); no row: the derived one."""

_APPLIED_OPS_TABLE: Final = """CREATE TABLE applied_ops (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        ops TEXT NOT NULL)"""
"""The fleet commands (ops) applied, a JSON list, oldest first (core/applied_ops.py)."""
_NO_OPS: Final = "INSERT INTO applied_ops VALUES (1, '[]')"

_UPGRADES: Final[dict[int, tuple[str, ...]]] = {
    # 1 -> 2: the PIN generation (a re-key moves to the next; every charger starts at 0).
    1: (
        "ALTER TABLE pin_config ADD COLUMN generation INTEGER NOT NULL DEFAULT 0 "
        "CHECK (generation >= 0)",
    ),
    # 2 -> 3: OCPP (issue 10): the security events waiting for the CSMS, the rotated password.
    2: (_OCPP_QUEUE_TABLE, _CSMS_CREDENTIALS_TABLE),
    # 3 -> 4: exactly once (issue 12): the fleet commands applied, none yet.
    3: (_APPLIED_OPS_TABLE, _NO_OPS),
}
"""What brings a file of schema version N to N+1, applied in one transaction at open."""

IRK_LENGTH: Final = 16
"""Bytes of the charger's Identity Resolving Key (Core spec Vol 3 Part H 2.4.2.1)."""

MAX_EVENTS: Final = 1000
"""Events kept in the log; older ones are dropped but stay counted in counters()."""

EVENT_KINDS: Final = tuple(kind.value for kind in EventKind)
"""The kinds the daemon records (core.events.EventKind); counters() reports each, zero included."""

BUSY_TIMEOUT_MS: Final = 5000
"""How long a write waits for another process (e.g. the CLI) to finish its own."""

_BONDS_TABLE = "bonds"

_SCHEMA = (
    """CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        serial TEXT NOT NULL,
        model TEXT NOT NULL,
        firmware TEXT NOT NULL,
        produced TEXT NOT NULL,
        address TEXT NOT NULL,
        irk BLOB NOT NULL CHECK (length(irk) = 16),
        secret BLOB NOT NULL CHECK (length(secret) = 32))""",
    """CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        profile TEXT NOT NULL,
        lockout_config TEXT NOT NULL)""",
    """CREATE TABLE pin_config (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        custom_pin TEXT,
        epoch INTEGER NOT NULL CHECK (epoch >= 0),
        generation INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0))""",
    """CREATE TABLE lockout (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL)""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    """CREATE TABLE counters (
        kind TEXT PRIMARY KEY,
        count INTEGER NOT NULL CHECK (count >= 0))""",
    _OCPP_QUEUE_TABLE,
    _CSMS_CREDENTIALS_TABLE,
    _APPLIED_OPS_TABLE,
)
_SINGLE_ROW_TABLES = ("identity", "settings", "pin_config", "lockout", "applied_ops")
_TABLES = (
    *_SINGLE_ROW_TABLES,
    "events",
    "counters",
    "ocpp_queue",
    "csms_credentials",
    _BONDS_TABLE,
)


@dataclass(frozen=True)
class ChargerIdentity:
    """Who the charger is, fixed at the factory: what the fleet service and the phone match on.

    `address` is the charger's random static Bluetooth address (Core spec Vol 6 Part B 1.3.2.1)
    and `irk` its Identity Resolving Key; both stay the same for the charger's life so that
    bonded phones find it again.
    """

    serial: str
    model: str
    firmware: FirmwareVersion
    produced: datetime.date
    address: str
    irk: bytes


@dataclass(frozen=True)
class LogEntry:
    """One entry of the charger's security log (wrong PINs, lockouts, PIN changes...)."""

    at: float
    kind: str
    """An EventKind's value, read back as text: a log written by another version still opens."""
    detail: str


@dataclass(frozen=True)
class QueuedEvent:
    """A security event waiting for the CSMS (core.ocpp_events), as the station sends it."""

    id: int
    at: float
    """The last occurrence (a merged event stands for `count` of them since `first_at`)."""
    first_at: float
    type: str
    tech_info: str
    count: int


class StateStore:
    """The charger's state in one SQLite file; the daemon's only source of truth.

    Make one with `create` (factory provisioning) or `open`. Every setter is one transaction,
    committed and synced before it returns (a new bond and a success's event only committed:
    core.durability); `transaction()` groups several setters into one
    commit when they must change together (e.g. a lockout update, an epoch change and an event).
    Write failures (disk full, I/O error) raise StateError so the daemon fails closed.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Wrap an open, already validated connection; use `create` or `open` instead."""
        self._connection = connection
        self._path = path
        self._depth = 0
        self._level = Durability.SYNCED
        self._queued = False
        self._queue_listeners: list[Callable[[], None]] = []
        self._in_flight: int | None = None
        self._identity, self._secret = self._load_identity()
        self._keystore = SqliteKeyStore(connection, _BONDS_TABLE)

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        identity: ChargerIdentity,
        secret: bytes,
        profile: ProfileName | str,
        lockout: LockoutConfig,
        pin_enabled: bool,
    ) -> StateStore:
        """Provision a new charger's state file at `path` (the factory step).

        Refuses an existing file, so provisioning can never overwrite a charger's secret or
        bonds by mistake. Everything is written in one transaction: a crash during `create`
        leaves a file without schema, which `open` reports instead of half a charger.
        """
        _validate_identity(identity)
        if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
            length = len(secret) if isinstance(secret, bytes) else type(secret).__name__
            raise StateError(
                f"factory secret must be {SECRET_SIZE} bytes, got {length}; "
                "generate it with secrets.token_bytes(32) and register it with the fleet service"
            )
        try:
            profile = profile_name(profile)
        except InvalidConfig as error:
            raise StateError(str(error)) from None
        target = Path(path)
        if target.exists():
            raise StateError(
                f"state file {target} already exists; provision into another path, or delete it "
                "deliberately (that forgets the charger's secret, PIN and bonds) and run again"
            )
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as error:
            raise StateError(
                f"state file {target} appeared while provisioning; provision into another path"
            ) from error
        except OSError as error:
            raise StateError(
                f"cannot create the state file {target}: {error.strerror}; "
                "check that the directory exists and is writable"
            ) from error
        os.close(fd)
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(target, isolation_level=None)
            _configure(connection)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                connection.execute(statement)
            SqliteKeyStore(connection, _BONDS_TABLE)
            connection.execute(
                "INSERT INTO identity VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (
                    identity.serial,
                    identity.model,
                    str(identity.firmware),
                    identity.produced.isoformat(),
                    identity.address,
                    identity.irk,
                    secret,
                ),
            )
            connection.execute(
                "INSERT INTO settings VALUES (1, ?, ?)",
                (profile, json.dumps(lockout.to_dict(), sort_keys=True)),
            )
            connection.execute(
                "INSERT INTO pin_config VALUES (1, ?, NULL, 0, 0)", (int(pin_enabled),)
            )
            connection.execute(
                "INSERT INTO lockout VALUES (1, ?)",
                (json.dumps(LockoutState().to_dict(), sort_keys=True),),
            )
            connection.execute(_NO_OPS)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
            _sync_directory(target.parent)
            return cls(connection, target)
        except BaseException:
            if connection is not None:
                connection.close()
            for leftover in (target, *_sidecars(target)):
                leftover.unlink(missing_ok=True)
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StateStore:
        """Open an existing charger state file, checking that it is a complete chargepin one.

        Never creates or alters a file that is not ours: a wrong `--state` path must fail with
        a message rather than start a charger with no secret and no lockout history.
        """
        target = Path(path)
        if not target.exists():
            raise StateError(
                f"no charger state at {target}; provision it with "
                f"`chargepin charger init --state {target} ...`"
            )
        try:
            connection = sqlite3.connect(
                f"{target.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None
            )
        except sqlite3.Error as error:
            raise StateError(
                f"cannot open the charger state {target}: {error}; "
                "check that the file and its directory are readable and writable"
            ) from error
        try:
            _configure(connection)
            _upgrade(connection, target)
            _check_schema(connection, target)
            connection.execute("PRAGMA journal_mode = WAL")
            store = cls(connection, target)
            store._check_values()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as error:
            # A damaged schema can make SQLite's own error message invalid UTF-8.
            connection.close()
            raise StateError(
                f"{target} is not a chargepin state database: {error}; "
                "restore it from backup or provision again with `chargepin charger init`"
            ) from error
        except BaseException:
            connection.close()
            raise
        return store

    def close(self) -> None:
        """Close the database; the store is unusable afterwards. Closing twice is harmless."""
        self._connection.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextmanager
    def transaction(self, level: Durability | None = None) -> Iterator[None]:
        """Group the writes inside the block into one commit (all or nothing, in order).

        Use it where a crash between two writes would leave a state the rules forbid, e.g. a
        failed attempt that both updates the lockout and moves to the next epoch. Nests: an
        inner block joins the outer one's commit. The outermost block's `level`
        (core.durability, default SYNCED) says whether the commit is fsynced before it returns;
        a write that must be SYNCED asks for it and is refused inside an ORDERED block.
        """
        if self._depth:
            if level is Durability.SYNCED and self._level is Durability.ORDERED:
                raise StateError(
                    "a write that must be synced was made inside an ORDERED transaction; "
                    "open the outer transaction as SYNCED (core.durability)"
                )
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._level = level or Durability.SYNCED
        with synchronous(self._connection, self._level):
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._write_error(error) from error
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._queued = False
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise
            self._depth = 0
            queued, self._queued = self._queued, False
            try:
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise self._write_error(error) from error
        if queued:
            for listener in list(self._queue_listeners):
                listener()

    # -- identity and configuration ----------------------------------------------------------

    @property
    def identity(self) -> ChargerIdentity:
        """The factory identity (cached: it never changes after provisioning)."""
        return self._identity

    @property
    def secret(self) -> bytes:
        """The 32-byte factory secret shared with the fleet service (cached, immutable)."""
        return self._secret

    @property
    def profile(self) -> ProfileName:
        """The security profile chosen at provisioning (core/profiles.py)."""
        return profile_name(self._row("SELECT profile FROM settings")[0])

    @property
    def lockout_config(self) -> LockoutConfig:
        """The lockout numbers this charger applies."""
        return LockoutConfig.from_dict(
            json.loads(self._row("SELECT lockout_config FROM settings")[0])
        )

    # -- PIN ---------------------------------------------------------------------------------

    @property
    def pin_enabled(self) -> bool:
        """Whether pairing requires the PIN (passkey entry with MITM)."""
        return bool(self._row("SELECT enabled FROM pin_config")[0])

    @property
    def custom_pin(self) -> Pin | None:
        """The owner's custom PIN, or None when the PIN comes from the epoch."""
        digits = self._row("SELECT custom_pin FROM pin_config")[0]
        return None if digits is None else Pin(str(digits))

    @property
    def epoch(self) -> int:
        """The current PIN epoch (public: advertised and readable by anyone)."""
        return int(self._row("SELECT epoch FROM pin_config")[0])

    @property
    def generation(self) -> int:
        """The PIN generation (public: in the info characteristic when it is not 0)."""
        return int(self._row("SELECT generation FROM pin_config")[0])

    @property
    def pin_state(self) -> PinState:
        """On or off, the epoch, the custom PIN and the generation, read together."""
        enabled, custom, epoch, generation = self._row(
            "SELECT enabled, custom_pin, epoch, generation FROM pin_config"
        )
        return PinState(
            bool(enabled),
            int(epoch),
            None if custom is None else Pin(str(custom)),
            int(generation),
        )

    def current_pin(self) -> Pin:
        """The PIN pairing must use now: the custom PIN if set, else the epoch's derived PIN."""
        return self.pin_state.live_pin(self._secret, self._identity.serial)

    def save_pin_state(self, state: PinState) -> None:
        """Persist the PIN state core decided, in one transaction.

        The epoch and the generation may stay or move forward but never back: an old epoch's
        (or generation's) PIN may already be partly known to an attacker, and the fleet service
        must never see one reused.
        """
        epoch = state.epoch
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
            raise StateError(
                f"epoch must be a non-negative whole number up to {MAX_EPOCH} (a u32 on the "
                f"air), got {epoch!r}"
            )
        try:
            generation = check_generation(state.generation)
        except InvalidConfig as error:
            raise StateError(str(error)) from None
        digits = None if state.custom_pin is None else state.custom_pin.digits
        with self.transaction(durability.LOCKOUT_STATE):
            current = self.pin_state
            if epoch < current.epoch:
                raise StateError(
                    f"epoch cannot go back from {current.epoch} to {epoch}; an old epoch's PIN "
                    f"may already be known: use epoch {current.epoch} or higher"
                )
            if generation < current.generation:
                raise StateError(
                    f"generation cannot go back from {current.generation} to {generation}; its "
                    "PINs may already be known"
                )
            self._execute(
                "UPDATE pin_config SET enabled = ?, custom_pin = ?, epoch = ?, generation = ?",
                (int(state.enabled), digits, epoch, generation),
            )

    def advance_epoch(self) -> int:
        """Persist a rotation (`PinState.rotated`: next epoch, custom PIN dropped); the new epoch.

        The service console's and the tests' way to rotate; the daemon persists the state that
        `core.attempts.failed_attempt` returns.
        """
        with self.transaction():
            state = self.pin_state.rotated()
            self.save_pin_state(state)
        return state.epoch

    # -- exactly once -------------------------------------------------------------------------

    @property
    def applied_ops(self) -> AppliedOps:
        """The fleet commands applied lately (core/applied_ops.py), oldest first."""
        try:
            return AppliedOps.from_text(str(self._row("SELECT ops FROM applied_ops")[0]))
        except InvalidConfig as error:
            raise StateError(
                f"state file {self._path} holds a damaged record of applied commands ({error}); "
                "restore it from backup, or empty it (UPDATE applied_ops SET ops = '[]': a "
                "command whose answer was lost may then be applied a second time)"
            ) from None

    def record_op(self, op: str | None) -> None:
        """Remember that fleet command `op` was applied (None: nothing to remember).

        Call it inside the transaction of the state change it records, so that a power cut
        keeps both or neither: a change kept without its op would be applied again when the
        fleet repeats the command; an op kept without its change would never be applied.
        """
        if op is None:
            return
        with self.transaction():
            record = self.applied_ops.after(op)
            self._execute("UPDATE applied_ops SET ops = ?", (record.to_text(),))

    # -- lockout -----------------------------------------------------------------------------

    @property
    def lockout_state(self) -> LockoutState:
        """The persisted lockout state (failures in the window, lock expiry, lockout count)."""
        return LockoutState.from_dict(json.loads(self._row("SELECT state FROM lockout")[0]))

    def save_lockout_state(self, state: LockoutState) -> None:
        """Persist the lockout state; committed and synced to disk when this returns.

        The daemon calls it before serving the next pairing attempt, so neither a reboot nor a
        power cut resets the count (inside `transaction()`, the block's commit does this).
        """
        text = json.dumps(state.to_dict(), sort_keys=True)
        with self.transaction(durability.LOCKOUT_STATE):
            self._execute("UPDATE lockout SET state = ?", (text,))

    # -- events ------------------------------------------------------------------------------

    def record_event(
        self, kind: EventKind | str, detail: str, now: float, facts: EventFacts | None = None
    ) -> None:
        """Append an event to the log, count it and queue what the CSMS is told, in one transaction.

        `kind` is an EventKind (or its value): a kind no reader knows would be counted where
        `charger info` never shows it. The log keeps the last MAX_EVENTS entries so an attack
        cannot fill the disk; the counters are kept separately and never drop. The security
        event for the CSMS (core.ocpp_events) is queued in the same transaction, which is the
        caller's when it holds one: the state change and its report commit together or not at
        all.
        """
        try:
            known = EventKind(kind)
        except ValueError:
            raise StateError(
                f"unknown event kind {kind!r}; use one of {', '.join(EVENT_KINDS)}"
            ) from None
        with self.transaction():
            self._execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
                (float(now), known.value, detail),
            )
            self._execute(
                "INSERT INTO counters (kind, count) VALUES (?, 1)"
                " ON CONFLICT (kind) DO UPDATE SET count = count + 1",
                (known.value,),
            )
            self._execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (MAX_EVENTS,)
            )
            report = ocpp_events.security_event(known, facts or EventFacts(), self.epoch)
            if report is not None:
                self.queue_security_event(report, now)

    # -- the OCPP queue ------------------------------------------------------------------------

    def queue_security_event(self, event: SecurityEvent, now: float) -> None:
        """Queue `event` for the CSMS where core.ocpp_events.place says (append, merge, drop)."""
        with self.transaction():
            length = int(self._row("SELECT COUNT(*) FROM ocpp_queue")[0])
            tail_row = self._connection.execute(
                "SELECT id, type, storm_key, first_at FROM ocpp_queue ORDER BY id DESC LIMIT 1"
            ).fetchone()
            tail = None
            if tail_row is not None:
                tail = ocpp_events.QueueTail(
                    type=str(tail_row[1]),
                    storm_key=tail_row[2],
                    first_at=float(tail_row[3]),
                    in_flight=tail_row[0] == self._in_flight,
                )
            placement = ocpp_events.place(event, now, length, tail)
            if placement is ocpp_events.Placement.DROP:
                event = ocpp_events.dropped_summary()
                placement = ocpp_events.Placement.APPEND
                if tail is not None and tail.type == event.type and not tail.in_flight:
                    placement = ocpp_events.Placement.MERGE
            if placement is ocpp_events.Placement.MERGE:
                assert tail_row is not None
                self._execute(
                    "UPDATE ocpp_queue SET count = count + 1, at = ?, info = ? WHERE id = ?",
                    (float(now), _info_text(event), tail_row[0]),
                )
            else:
                self._execute(
                    "INSERT INTO ocpp_queue (at, first_at, type, info, storm_key, count)"
                    " VALUES (?, ?, ?, ?, ?, 1)",
                    (float(now), float(now), event.type.value, _info_text(event), event.storm_key),
                )
            self._queued = True

    def queued_events(self, limit: int = 100) -> list[QueuedEvent]:
        """The oldest `limit` events waiting for the CSMS, in the order they must be sent."""
        rows = self._connection.execute(
            "SELECT id, at, first_at, type, info, count FROM ocpp_queue ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            QueuedEvent(
                id=int(row_id),
                at=float(at),
                first_at=float(first_at),
                type=str(kind),
                tech_info=ocpp_events.tech_info(
                    json.loads(info), int(count), float(first_at), str(kind)
                ),
                count=int(count),
            )
            for row_id, at, first_at, kind, info, count in rows
        ]

    def queue_length(self) -> int:
        """How many events wait for the CSMS."""
        return int(self._row("SELECT COUNT(*) FROM ocpp_queue")[0])

    def sending(self, event_id: int | None) -> None:
        """Mark the event the station has sent and awaits the answer to (None: none).

        A new identical failure is then queued after it rather than counted in it: the count
        would leave the queue with the answered event and never reach the CSMS.
        """
        self._in_flight = event_id

    def acknowledge(self, event_id: int) -> None:
        """The CSMS answered event `event_id`: forget it (only now; a resend keeps its eventId).

        ORDERED (core.durability.EVENT_ANSWERED): a power cut may bring the row back, and the
        event is sent again with the same eventId, which a CSMS stores once.
        """
        with self.transaction(durability.EVENT_ANSWERED):
            self._execute("DELETE FROM ocpp_queue WHERE id = ?", (event_id,))
        if self._in_flight == event_id:
            self._in_flight = None

    def on_queued(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every commit that queued an event; returns the remover."""
        self._queue_listeners.append(listener)
        return lambda: self._queue_listeners.remove(listener)

    # -- the CSMS password ---------------------------------------------------------------------

    @property
    def csms_password(self) -> str:
        """The Basic auth password for the CSMS: the one a CSMS set, else the derived one."""
        row = self._connection.execute("SELECT password FROM csms_credentials").fetchone()
        if row is not None:
            return str(row[0])
        return csms_auth.csms_password(self._secret, self._identity.serial)

    @property
    def csms_password_rotated(self) -> bool:
        """Whether a CSMS replaced the derived password (SetVariables BasicAuthPassword)."""
        return self._connection.execute("SELECT 1 FROM csms_credentials").fetchone() is not None

    def set_csms_password(self, password: str) -> None:
        """Keep `password` as the Basic auth password from the next connection on (durable)."""
        problem = csms_auth.password_problem(password)
        if problem is not None:
            raise StateError(problem)
        with self.transaction():
            self._execute(
                "INSERT INTO csms_credentials (id, password) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET password = excluded.password",
                (password,),
            )

    def events(self, limit: int = 100) -> list[LogEntry]:
        """The last `limit` events, oldest first (the order in which they happened)."""
        rows = self._connection.execute(
            "SELECT at, kind, detail FROM"
            " (SELECT id, at, kind, detail FROM events ORDER BY id DESC LIMIT ?)"
            " ORDER BY id",
            (limit,),
        ).fetchall()
        return [
            LogEntry(at=float(at), kind=str(kind), detail=str(detail)) for at, kind, detail in rows
        ]

    def counters(self) -> dict[str, int]:
        """How many events of each kind were ever recorded (every known kind, zero included)."""
        counts = dict.fromkeys(EVENT_KINDS, 0)
        for kind, count in self._connection.execute(
            "SELECT kind, count FROM counters ORDER BY kind"
        ):
            counts[str(kind)] = int(count)
        return counts

    # -- bonds -------------------------------------------------------------------------------

    @property
    def keystore(self) -> SqliteKeyStore:
        """Bumble's key store on this database (table "bonds"); set it on the Device."""
        return self._keystore

    # -- internals ---------------------------------------------------------------------------

    def _row(self, sql: str) -> tuple[Any, ...]:
        row = self._connection.execute(sql).fetchone()
        if row is None:
            raise StateError(
                f"state file {self._path} lost a row ({sql}); restore it from backup or "
                "provision again with `chargepin charger init`"
            )
        return tuple(row)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        try:
            self._connection.execute(sql, params)
        except sqlite3.Error as error:
            raise self._write_error(error) from error

    def _write_error(self, error: sqlite3.Error) -> StateError:
        return StateError(
            f"could not save the charger state to {self._path}: {error}; check free space and "
            "the storage medium, then restart the daemon (it serves no pairing meanwhile)"
        )

    def _load_identity(self) -> tuple[ChargerIdentity, bytes]:
        serial, model, firmware, produced, address, irk, secret = self._row(
            "SELECT serial, model, firmware, produced, address, irk, secret FROM identity"
        )
        try:
            identity = ChargerIdentity(
                serial=serial,
                model=model,
                firmware=FirmwareVersion.parse(firmware),
                produced=datetime.date.fromisoformat(produced),
                address=address,
                irk=irk,
            )
            _validate_identity(identity)
        except (TypeError, ValueError, StateError) as error:
            raise StateError(
                f"state file {self._path} holds an invalid identity ({error}); restore it from "
                "backup or provision again with `chargepin charger init`"
            ) from error
        if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
            raise StateError(
                f"state file {self._path} holds an invalid factory secret; restore it from "
                "backup (the fleet service cannot re-issue it)"
            )
        return identity, secret

    def _check_values(self) -> None:
        """Read every stored value once so a damaged file fails at open, not mid-pairing."""
        try:
            self.profile  # noqa: B018
            self.lockout_config  # noqa: B018
            self.lockout_state  # noqa: B018
            self.custom_pin  # noqa: B018
            if not 0 <= self.epoch <= MAX_EPOCH:
                raise ValueError(f"epoch {self.epoch} is outside 0..{MAX_EPOCH}")
            if not 0 <= self.generation <= MAX_GENERATION:
                raise ValueError(f"generation {self.generation} is outside 0..{MAX_GENERATION}")
            self.pin_enabled  # noqa: B018
            self.applied_ops  # noqa: B018
            self.counters()
            self.events(MAX_EVENTS)
            for event in self.queued_events(ocpp_events.MAX_QUEUE + 1):  # + its summary event
                ocpp_events.timestamp(event.at)  # the time the link sends: one OCPP can carry
        except StateError:
            raise
        except DAMAGED_VALUE as error:
            raise StateError(
                f"state file {self._path} holds an invalid value ({error}); restore it from "
                "backup or provision again with `chargepin charger init`"
            ) from error
        damaged = self._keystore.damaged()
        if damaged:
            address, problem = damaged[0]
            raise StateError(
                f"state file {self._path} holds a damaged bond for {address!r} ({problem}); "
                f"delete that row of table {_BONDS_TABLE} (the phone then pairs again) or "
                "restore the file from backup"
            )


def _info_text(event: SecurityEvent) -> str:
    return json.dumps(dict(event.info), separators=(",", ":"), sort_keys=False)


def _configure(connection: sqlite3.Connection) -> None:
    """Per-connection settings: wait for other writers, sync every commit, enforce keys."""
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")


def _upgrade(connection: sqlite3.Connection, path: Path) -> None:
    """Bring an older chargepin state file to SCHEMA_VERSION, in one transaction (or not at all).

    Only versions this module knows are touched; `_check_schema` then judges the result.
    """
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if not 1 <= version < SCHEMA_VERSION:
        return
    try:
        connection.execute("BEGIN IMMEDIATE")
        for step in range(version, SCHEMA_VERSION):
            for statement in _UPGRADES[step]:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise StateError(
            f"cannot upgrade {path} from schema version {version} to {SCHEMA_VERSION}: {error}; "
            "check that the file is writable, or restore it from backup"
        ) from error


def _check_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Raise StateError unless the database has our schema version, tables and rows."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version == 0:
        raise StateError(
            f"{path} is a SQLite database but not a chargepin charger state (no chargepin schema; "
            "an interrupted `chargepin charger init` leaves such a file); check the path, or "
            "delete it and provision again with `chargepin charger init`"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path} has schema version {version}, newer than this chargepin reads "
            f"({SCHEMA_VERSION}); upgrade chargepin"
        )
    if version != SCHEMA_VERSION:
        raise StateError(
            f"{path} has unknown schema version {version} (expected {SCHEMA_VERSION}); "
            "restore it from backup or provision again with `chargepin charger init`"
        )
    problem = connection.execute("PRAGMA quick_check").fetchone()[0]
    if problem != "ok":
        raise StateError(
            f"{path} is damaged ({problem}); restore it from backup or provision again with "
            "`chargepin charger init`"
        )
    names = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    for table in _TABLES:
        if table not in names:
            raise StateError(
                f"state file {path} is not a chargepin charger database (missing table {table}); "
                "restore it from backup or provision again with `chargepin charger init`"
            )
    for table in _SINGLE_ROW_TABLES:
        if connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] != 1:
            raise StateError(
                f"state file {path} is incomplete (table {table} has no row); restore it from "
                "backup or provision again with `chargepin charger init`"
            )


def _validate_identity(identity: ChargerIdentity) -> None:
    """Raise StateError unless the identity can be provisioned as it is."""
    problem = serial_problem(identity.serial)
    if problem is not None:
        raise StateError(problem)
    if not isinstance(identity.model, str) or not identity.model.strip():
        raise StateError(f"model must be non-empty text, got {identity.model!r}")
    if not isinstance(identity.firmware, FirmwareVersion):
        raise StateError(f"firmware must be a FirmwareVersion, got {identity.firmware!r}")
    if not isinstance(identity.produced, datetime.date):
        raise StateError(f"production date must be a date, got {identity.produced!r}")
    if not isinstance(identity.address, str):
        raise StateError(f"address must be text like C0:12:34:56:78:9A, got {identity.address!r}")
    problem = static_address_problem(identity.address)
    if problem is not None:
        raise StateError(
            f"address {identity.address} is not a random static address: {problem}; use an "
            "upper-case random static address such as C0:12:34:56:78:9A (first digit C to F)"
        )
    if not isinstance(identity.irk, bytes) or len(identity.irk) != IRK_LENGTH:
        raise StateError(
            f"IRK must be {IRK_LENGTH} bytes, got {identity.irk!r}; generate it with "
            "secrets.token_bytes(16)"
        )


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _sync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
