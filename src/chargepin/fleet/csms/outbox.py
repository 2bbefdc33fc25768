"""The outbox: owner actions waiting for, sent to, applied by or refused by a charger.

A durable row per command (`CsmsCommand`), so nothing an owner decided lives only in a process:
a fleet restart, a lost socket or a charger offline for days leaves it `waiting` (or `sent`
without an answer), and the process that next holds the charger's connection delivers it with
a fresh challenge. The ticket is sealed and the receipt committed by fleet/tickets.py, the same
functions a phone's request uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chargepin.core.errors import ChargepinError
from chargepin.core.tickets import Action, new_op
from chargepin.fleet import tickets
from chargepin.fleet.access import require_owner
from chargepin.fleet.csms import gateways
from chargepin.fleet.db import keyset_page
from chargepin.fleet.errors import Conflict, FleetError, Unprocessable
from chargepin.fleet.models import Charger, CsmsCommand, CsmsConnection, PhoneBond, User
from chargepin.fleet.times import aware
from chargepin.fleet.vault import Vault

MAX_REASON = 32
MAX_DETAIL = 500
"""Column widths of a refusal's reason and detail; a charger's longer text is cut."""


class CommandState(StrEnum):
    WAITING = "waiting"
    """Not yet sent: the charger is offline, or its turn has not come."""
    SENT = "sent"
    """The ticket went out; no answer yet (sent again, freshly sealed, on the next connection)."""
    APPLIED = "applied"
    """The charger applied it; its receipt verified and committed."""
    FAILED = "failed"
    """The charger (or the PIN policy) refused it; `reason` and `detail` say why."""


OPEN_STATES = (CommandState.WAITING, CommandState.SENT)

MAX_OPEN_PER_CHARGER = 20
"""Open (waiting or sent) commands an owner may queue for one charger (FleetSettings
.outbox_max_open): an offline charger's queue cannot grow without bound, and a careless or
hostile owner script cannot fill the table. Each command is applied in order at the next
connection, so twenty is far more than any real change needs; a revocation's own commands
(fleet/members.py) are never refused by it, since a revoked phone must always be removed."""

COMMAND_ACTIONS = frozenset(
    {Action.REMOVE_PHONE, Action.CHANGE_PIN, Action.ENABLE_PIN, Action.DISABLE_PIN, Action.REKEY}
)
"""The owner actions sent to a charger as tickets over OCPP (those of fleet/tickets.py)."""
CSMS_PASSWORD = "csms_password"
"""Rotate the charger's OCPP Basic auth password (SetVariables `SecurityCtrlr.BasicAuthPassword`,
WriteOnly): the fleet keeps only its SHA-256 (core.csms_auth.rotated_password_digest)."""
COMMAND_NAMES = frozenset({a.value for a in COMMAND_ACTIONS} | {CSMS_PASSWORD})
PASSWORD_ACCEPTED = frozenset({"Accepted", "RebootRequired"})
"""SetVariables answers that mean the charger took the password (B05.FR.xx: RebootRequired
takes effect at the next connection, which is when it matters)."""
_DIGESTS = "_digests"
"""args key of a password command: the SHA-256 of each password sent for it (never shown)."""


@dataclass(frozen=True)
class CommandView:
    id: int
    action: str
    args: dict[str, str]
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    attempts: int
    reason: str | None
    detail: str | None
    receipt: str | None


@dataclass(frozen=True)
class Pending:
    """The next command to deliver to a charger."""

    id: int
    action: str


def enqueue(
    db: Session,
    charger: Charger,
    action: str,
    args: dict[str, str],
    requested_by: int | None,
    now: dt.datetime,
) -> CsmsCommand:
    """A new waiting command for `charger` (the caller's transaction commits it, and with it
    the NOTIFY that wakes the gateway holding the charger: fleet/csms/gateways.py)."""
    if action not in COMMAND_NAMES:
        raise ValueError(f"{action} is not sent to chargers over OCPP")
    command = CsmsCommand(
        charger_id=charger.id,
        op=new_op(),
        action=str(action),
        args=dict(args),
        state=CommandState.WAITING.value,
        requested_by=requested_by,
        created_at=now,
        updated_at=now,
        attempts=0,
    )
    db.add(command)
    db.flush()
    gateways.notify(db, charger.id)
    return command


@dataclass(frozen=True)
class Queued:
    """An owner's command, queued: its charger (to wake its connection) and the command."""

    charger_id: int
    command: CommandView


SEALED_PIN = "_pin"
"""args key of a chosen PIN, sealed in the vault (bound to the charger): a PIN waiting in the
outbox is as secret as the charger's custom PIN, so it is never in the table in clear and never
listed (keys starting with `_` are not shown)."""


def _pin_context(charger_id: int) -> str:
    return f"outbox-pin:{charger_id}"


def _sealed(vault: Vault, charger_id: int, args: dict[str, str]) -> dict[str, str]:
    if "pin" not in args:
        return args
    kept = {k: v for k, v in args.items() if k != "pin"}
    kept[SEALED_PIN] = vault.seal(args["pin"].encode(), _pin_context(charger_id)).hex()
    return kept


def command_args(vault: Vault, charger_id: int, args: Mapping[str, Any]) -> dict[str, str]:
    """The command's arguments as the ticket carries them (the sealed PIN opened)."""
    opened = {str(k): str(v) for k, v in args.items() if not str(k).startswith("_")}
    sealed = args.get(SEALED_PIN)
    if isinstance(sealed, str):
        opened["pin"] = vault.open(bytes.fromhex(sealed), _pin_context(charger_id)).decode()
    return opened


def request(
    db: Session,
    vault: Vault,
    owner: User,
    serial: str,
    action: str,
    args: Mapping[str, str],
    now: dt.datetime,
    max_open: int = MAX_OPEN_PER_CHARGER,
) -> Queued:
    """An owner's action for the charger, queued (owner only): the JSON API's
    `POST /chargers/{serial}/commands` and the web app's Change PIN and Remove phone. What can
    be refused now is refused now (tickets.check_request: the PIN class, a weak PIN; 409
    `too_many_queued` when `max_open` commands already wait for the charger); a chosen PIN is
    kept sealed (SEALED_PIN); the caller wakes the charger's connection once the transaction is
    committed."""
    charger = require_owner(db, owner, serial, "send commands to the charger")
    if action not in COMMAND_NAMES:
        raise Unprocessable(
            f"{action} is not sent over OCPP; use one of " + ", ".join(sorted(COMMAND_NAMES)),
            code="invalid_command",
        )
    kept = dict(args)
    if action != CSMS_PASSWORD:
        kept = _sealed(vault, charger.id, tickets.check_request(charger, Action(action), args))
    # The charger's row written first (a no-op UPDATE): it locks the row on PostgreSQL and takes
    # SQLite's write lock (whose driver would not begin the transaction before a SELECT, and
    # which ignores FOR UPDATE), so concurrent requests count one after the other and the cap
    # holds however many arrive at once.
    db.execute(update(Charger).where(Charger.id == charger.id).values(id=Charger.id))
    if open_count(db, charger.id) >= max_open:
        raise Conflict(
            f"{max_open} commands already wait for {serial}, the most one charger may have "
            "queued; they are delivered when it connects: wait until it has applied them (GET "
            f"/chargers/{serial}/commands) or check that it is online, then try again",
            code="too_many_queued",
        )
    command = enqueue(db, charger, action, kept, owner.id, now)
    return Queued(charger.id, view(command))


def open_count(db: Session, charger_id: int) -> int:
    """How many of the charger's commands are waiting or sent."""
    count = db.scalar(
        select(func.count())
        .select_from(CsmsCommand)
        .where(
            CsmsCommand.charger_id == charger_id,
            CsmsCommand.state.in_([s.value for s in OPEN_STATES]),
        )
    )
    return int(count or 0)


def open_commands(db: Session, charger_id: int) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(action, sorted args) of the charger's open commands: what is already on its way."""
    rows = db.execute(
        select(CsmsCommand.action, CsmsCommand.args).where(
            CsmsCommand.charger_id == charger_id,
            CsmsCommand.state.in_([s.value for s in OPEN_STATES]),
        )
    )
    return {
        (action, tuple(sorted((str(k), str(v)) for k, v in (args or {}).items())))
        for action, args in rows
    }


def newest_open(db: Session, charger_id: int, action: str) -> CommandView | None:
    """The charger's newest command for `action` still on its way (waiting or sent), if any:
    what the web app shows instead of offering the same change again."""
    row = db.scalars(
        select(CsmsCommand)
        .where(
            CsmsCommand.charger_id == charger_id,
            CsmsCommand.action == action,
            CsmsCommand.state.in_([s.value for s in OPEN_STATES]),
        )
        .order_by(CsmsCommand.id.desc())
        .limit(1)
    ).first()
    return None if row is None else view(row)


def listed(
    db: Session, owner: User, serial: str, limit: int, before: int | None
) -> list[CommandView]:
    """The charger's commands below id `before`, newest first (owner only)."""
    charger = require_owner(db, owner, serial, "see the commands sent to the charger")
    query = select(CsmsCommand).where(CsmsCommand.charger_id == charger.id)
    rows = db.scalars(keyset_page(query, CsmsCommand.id, before, limit))
    return [view(c) for c in rows]


def view(c: CsmsCommand) -> CommandView:
    return CommandView(
        c.id,
        c.action,
        {str(k): str(v) for k, v in (c.args or {}).items() if not str(k).startswith("_")},
        c.state,
        aware(c.created_at),
        aware(c.updated_at),
        c.attempts,
        c.reason,
        c.detail,
        None if c.receipt is None else c.receipt.hex(),
    )


def next_for(db: Session, charger_id: int) -> Pending | None:
    """The charger's oldest open command: commands reach a charger in the order decided."""
    row = db.scalar(
        select(CsmsCommand)
        .where(
            CsmsCommand.charger_id == charger_id,
            CsmsCommand.state.in_([s.value for s in OPEN_STATES]),
        )
        .order_by(CsmsCommand.id)
        .limit(1)
    )
    return None if row is None else Pending(row.id, row.action)


class NotHolder(Exception):
    """The connection asking to deliver no longer holds the charger (a newer one, in this
    gateway or another, took its registry row): it must not send anything, and closes."""


def claim(db: Session, command_id: int, connection_id: str) -> CsmsCommand | None:
    """The open command, locked for this transaction, if `connection_id` holds its charger:
    exactly one connection (so one gateway) sends a given ticket. `FOR UPDATE SKIP LOCKED`: a
    command another transaction is sealing or concluding right now is not waited for (None,
    as for a command no longer open); the registry row is read `FOR SHARE`, so a takeover
    (registry.take locks it for update) and a claim never interleave. NotHolder when another
    connection holds the charger."""
    command = db.scalar(
        select(CsmsCommand)
        .where(CsmsCommand.id == command_id, CsmsCommand.state.in_([s.value for s in OPEN_STATES]))
        .with_for_update(skip_locked=True)
    )
    if command is None:
        return None
    holder = db.scalar(
        select(CsmsConnection.connection_id)
        .where(CsmsConnection.charger_id == command.charger_id)
        .with_for_update(read=True)
    )
    if holder != connection_id:
        raise NotHolder(f"connection {connection_id} no longer holds charger {command.charger_id}")
    return command


def seal(
    db: Session,
    vault: Vault,
    command_id: int,
    challenge: bytes,
    now: dt.datetime,
    connection_id: str,
) -> bytes | None:
    """The ticket for the command against the charger's `challenge`, the command marked sent
    (claimed by `connection_id`, see `claim`); None when it is no longer open or someone else
    is on it, or (the command failed, with the reason) when the fleet itself refuses it now
    (the PIN class no longer allows it, a weak PIN)."""
    command = claim(db, command_id, connection_id)
    if command is None:
        return None
    charger = db.get(Charger, command.charger_id)
    assert charger is not None  # foreign key, ON DELETE CASCADE
    try:
        issued = tickets.seal_for_charger(
            db,
            vault,
            charger,
            challenge,
            Action(command.action),
            command_args(vault, charger.id, command.args or {}),
            now.timestamp(),
            op=command.op,
        )
    except FleetError as error:
        _finish(command, CommandState.FAILED, now, error.code, str(error))
        return None
    command.state = CommandState.SENT.value
    command.attempts += 1
    command.updated_at = now
    return issued.blob


def conclude(
    db: Session, vault: Vault, command_id: int, accepted: bool, data: Any, now: dt.datetime
) -> CommandState:
    """Record the charger's answer to the ticket: its receipt committed (applied) or its reason
    (failed). A receipt that does not verify is a failure: nothing is committed."""
    command = db.get(CsmsCommand, command_id, with_for_update=True)
    if command is None or command.state != CommandState.SENT:
        return CommandState.FAILED
    answer = data if isinstance(data, dict) else {}
    if not accepted or answer.get("ok") is not True:
        reason = answer.get("reason")
        detail = answer.get("detail")
        _finish(
            command,
            CommandState.FAILED,
            now,
            reason if isinstance(reason, str) and reason else "refused",
            detail if isinstance(detail, str) else "the charger refused the ticket",
        )
        return CommandState.FAILED
    receipt_hex = answer.get("receipt")
    try:
        receipt = bytes.fromhex(receipt_hex) if isinstance(receipt_hex, str) else b""
        charger = db.get(Charger, command.charger_id)
        assert charger is not None
        tickets.commit_charger_receipt(db, vault, charger, receipt)
    except (ValueError, ChargepinError) as error:
        _finish(command, CommandState.FAILED, now, "receipt_invalid", str(error))
        return CommandState.FAILED
    command.receipt = receipt
    _finish(command, CommandState.APPLIED, now, None, None)
    address = (command.args or {}).get("address")
    if command.action == Action.REMOVE_PHONE and isinstance(address, str):
        # The charger forgot the phone: it is nobody's phone on this charger any more.
        db.execute(
            delete(PhoneBond).where(
                PhoneBond.charger_id == command.charger_id, PhoneBond.address == address
            )
        )
    return CommandState.APPLIED


def unanswered(db: Session, command_id: int, now: dt.datetime, why: str) -> None:
    """The charger did not answer (timeout, socket lost): the command stays open, noted."""
    command = db.get(CsmsCommand, command_id)
    if command is not None and command.state in OPEN_STATES:
        command.detail = why[:MAX_DETAIL]
        command.updated_at = now


def fail(db: Session, command_id: int, now: dt.datetime, reason: str, detail: str) -> None:
    command = db.get(CsmsCommand, command_id)
    if command is not None and command.state in OPEN_STATES:
        _finish(command, CommandState.FAILED, now, reason, detail)


def _finish(
    command: CsmsCommand,
    state: CommandState,
    now: dt.datetime,
    reason: str | None,
    detail: str | None,
) -> None:
    command.state = state.value
    command.reason = None if reason is None else reason[:MAX_REASON]
    command.detail = None if detail is None else detail[:MAX_DETAIL]
    command.updated_at = now


def password_sent(
    db: Session, command_id: int, digest: bytes, now: dt.datetime, connection_id: str
) -> bool:
    """Note the digest of the password about to be sent for the command (the command marked
    sent, claimed by `connection_id`: `claim`); False when the command is no longer open. Every
    digest sent is kept until the charger answers: a charger that took one whose answer was
    lost still gets in with it."""
    command = claim(db, command_id, connection_id)
    if command is None:
        return False
    args = dict(command.args or {})
    args[_DIGESTS] = [*list(args.get(_DIGESTS, []))[-3:], digest.hex()]
    command.args = args
    command.state = CommandState.SENT.value
    command.attempts += 1
    command.updated_at = now
    return True


def password_answered(db: Session, command_id: int, status: str, now: dt.datetime) -> CommandState:
    """The charger's SetVariables answer: the password's digest becomes the one the fleet
    checks (applied), or the command failed with the status."""
    command = db.get(CsmsCommand, command_id, with_for_update=True)
    if command is None or command.state != CommandState.SENT:
        return CommandState.FAILED
    if status not in PASSWORD_ACCEPTED:
        _finish(
            command,
            CommandState.FAILED,
            now,
            "password_refused",
            f"the charger answered {status[:40]} to SetVariables SecurityCtrlr.BasicAuthPassword",
        )
        return CommandState.FAILED
    _adopt(db, command, bytes.fromhex(list((command.args or {})[_DIGESTS])[-1]), now)
    return CommandState.APPLIED


def sent_password_digests(db: Session, charger_id: int) -> list[tuple[CsmsCommand, bytes]]:
    """The digests of passwords sent to the charger whose answer never came."""
    rows = db.scalars(
        select(CsmsCommand).where(
            CsmsCommand.charger_id == charger_id,
            CsmsCommand.action == CSMS_PASSWORD,
            CsmsCommand.state == CommandState.SENT.value,
        )
    )
    return [
        (command, bytes.fromhex(str(d)))
        for command in rows
        for d in (command.args or {}).get(_DIGESTS, [])
    ]


def adopt_password(db: Session, command: CsmsCommand, digest: bytes, now: dt.datetime) -> None:
    """The charger connected with a password sent for `command`: it took it."""
    _adopt(db, command, digest, now)


def _adopt(db: Session, command: CsmsCommand, digest: bytes, now: dt.datetime) -> None:
    charger = db.get(Charger, command.charger_id, with_for_update=True)
    assert charger is not None
    charger.csms_password_hash = digest
    args = dict(command.args or {})
    args.pop(_DIGESTS, None)  # the applied one is the charger's; the others are void
    command.args = args
    _finish(command, CommandState.APPLIED, now, None, None)
