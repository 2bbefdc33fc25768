"""The fleet service's tables (SQLAlchemy 2, typed). Secrets and PINs are vault ciphertexts.

The schema is created and changed only by Alembic migrations (fleet/migrations); these classes
describe it for the ORM. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from chargepin.core.limits import SERIAL_MAX_LENGTH
from chargepin.core.policy import FirmwareVersion
from chargepin.core.tickets import new_op

_parse_firmware = functools.lru_cache(maxsize=1024)(FirmwareVersion.parse)
"""A fleet has few firmware versions and a listing reads hundreds of rows: each text is parsed
once (a FirmwareVersion is immutable, so the same one may be handed out again)."""


class FirmwareColumn(TypeDecorator[FirmwareVersion]):
    """A firmware version stored as its text ("6.11.2"), read back parsed: the fleet parses it
    once, where it comes out of the database, and the PIN policy gets a FirmwareVersion."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: FirmwareVersion | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> FirmwareVersion | None:
        return None if value is None else _parse_firmware(value)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        dt.datetime: DateTime(timezone=True),
    }


class User(Base):
    """An account: the owner of chargers or an invited user."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    claim_lockout: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Wrong passwords of one account or one source address (core.login_throttle.Throttle).

    `key` is "account:" and the SHA-256 of the address typed (known or not, so a lock tells
    nobody which accounts exist; a password typed into the e-mail field is not kept in clear),
    or "source:" and the client's address (an IPv6 client's /64).
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # From then on the row decides nothing (core.login_throttle.*_forgotten_at): pruned.
    forget_after: Mapped[dt.datetime] = mapped_column(index=True)


class Token(Base):
    """A bearer token of a logged-in app; only its SHA-256 is stored."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    user: Mapped[User] = relationship()


class Charger(Base):
    """A charger the factory made: identity, vaulted secret, claim code, PIN state."""

    __tablename__ = "chargers"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(SERIAL_MAX_LENGTH), unique=True, index=True)
    model: Mapped[str] = mapped_column(String(64))
    firmware: Mapped[FirmwareVersion] = mapped_column(FirmwareColumn())
    produced: Mapped[dt.date] = mapped_column(Date)
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # fleet/claims.py code_digest: a keyed HMAC (41 bytes) or, from before issue 9, a bare
    # SHA-256 (32); the declared 32 was never enforced (BYTEA, BLOB). Kept after the claim.
    claim_code_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_at: Mapped[dt.datetime | None]
    # No longer read or written: the per-charger claim lock let strangers block commissioning
    # (issue 9). Kept: dropping a column rebuilds the table on SQLite (see migration 0004).
    claim_lockout: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The PIN state the charger is known to have (committed by a receipt or at the factory).
    pin_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # A u32 (core.limits.MAX_EPOCH): PostgreSQL's INTEGER is signed 32-bit and stops at 2**31 - 1.
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    # The PIN generation (core.pin_state.PinState.generation): a re-key moves to the next; a u32.
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    custom_pin_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A change a ticket was issued for, not yet confirmed by a receipt (DESIGN.md "nothing lost").
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # SHA-256 of an OCPP Basic auth password the fleet set on the charger (core.csms_auth);
    # None: the password derived from the secret.
    csms_password_hash: Mapped[bytes | None] = mapped_column(LargeBinary)


class ClaimSource(Base):
    """Wrong claim codes from one source (an IPv4 address, an IPv6 /64): core/claims.py."""

    __tablename__ = "claim_sources"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    claim_lockout: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # From then on the row decides nothing (core.claims.source_forgotten_at): pruned.
    forget_after: Mapped[dt.datetime] = mapped_column(index=True)


class Membership(Base):
    """Who may do what with a charger: `owner` or `user` (invited); revoked ones stay recorded."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("charger_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]

    charger: Mapped[Charger] = relationship()
    user: Mapped[User] = relationship()


class Invitation(Base):
    """An owner's invitation of an e-mail address to a charger; accepted with a one-time code."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_charger_id_email", "charger_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class PinReveal(Base):
    """Audit: every time a PIN left the vault, who saw which epoch's PIN, with which app."""

    __tablename__ = "pin_reveals"
    # Its one index by charger: charger_id alone is its prefix (migration 0016).
    __table_args__ = (Index("ix_pin_reveals_charger_id_id", "charger_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(BigInteger)  # a u32, as Charger.epoch
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    app_version: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PresenceNonce(Base):
    """A nonce the fleet issued a member for a device to prove it is the charger (issue 9.8).

    Single use (`used_at`), good for core.presence.NONCE_TTL after `issued_at`, bound to the
    member and the charger. In the database, not in a worker's memory: the nonce may come back
    to any worker. Only its SHA-256 is kept.
    """

    __tablename__ = "presence_nonces"
    __table_args__ = (Index("ix_presence_nonces_charger_id_user_id", "charger_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    nonce_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    issued_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class SecurityEvent(Base):
    """Facts a phone reported about a charger: firmware read, wrong PINs, lockouts seen."""

    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_charger_id_at", "charger_id", "at"),
        Index("ix_security_events_charger_id_id", "charger_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(500))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PhoneBond(Base):
    """A phone the charger said it bonded (core.bond_statement), and whose phone it is.

    One row per charger and address: the first account to relay a bond holds it, a newer bond
    of the address takes it over; these are the phones revoking that member lists for removal.
    """

    __tablename__ = "phone_bonds"
    __table_args__ = (UniqueConstraint("charger_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(19))  # F0:F1:F2:F3:F4:F5, "/P" if public
    sequence: Mapped[int] = mapped_column(BigInteger)  # a u32, the charger's pairing count
    bond: Mapped[bytes] = mapped_column(LargeBinary(8))  # core.bond_statement.bond_id
    attested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CsmsConnection(Base):
    """The connection registry: which fleet process holds a charger's OCPP WebSocket.

    One row per charger, written at the upgrade and by every Heartbeat; `connection_id` names
    the socket, so a newer connection (anywhere) takes the row over and the older one learns it
    lost it at its next write. A charger is online while `last_seen` is within the grace period
    (fleet/csms/registry.py); the row outlives the socket so the owner sees when it was last up.
    """

    __tablename__ = "csms_connections"
    __table_args__ = (Index("ix_csms_connections_process", "process"),)

    charger_id: Mapped[int] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    connection_id: Mapped[str] = mapped_column(String(32))
    # The gateway (a CsmsGateway's id) whose process holds the socket.
    process: Mapped[str] = mapped_column(String(128))
    connected_at: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    booted_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    connector_status: Mapped[str | None] = mapped_column(String(20))


class CsmsGateway(Base):
    """A process serving OCPP WebSockets (`fleet serve`, `fleet gateway`) and its heartbeat.

    Written every few seconds by the process (fleet/csms/gateways.py); a charger held by a
    gateway whose `last_seen` is older than the gateway grace is offline, whatever the charger's
    own row says (the process died with its sockets). No foreign key from csms_connections: a
    connection naming a gateway row that is gone (pruned) is offline too.
    """

    __tablename__ = "csms_gateways"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]


class StationSecurityEvent(Base):
    """A SecurityEventNotification a charger sent over OCPP; one per `event_id` and charger."""

    __tablename__ = "station_security_events"
    __table_args__ = (
        UniqueConstraint("charger_id", "event_id"),
        Index("ix_station_security_events_charger_id_id", "charger_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    # customData.eventId ("<serial>:<queue id>"); None from a station that sends none.
    event_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(50))
    tech_info: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]


class CsmsCommand(Base):
    """The outbox: an owner's decision on its way to a charger over OCPP.

    waiting -> sent -> applied (the charger's receipt verified and committed) or failed (the
    charger's reason). Durable: a fleet restart or a lost socket leaves it waiting or sent, and
    it is delivered (again, with a fresh challenge) when the charger is next connected.
    """

    __tablename__ = "csms_commands"
    __table_args__ = (
        Index("ix_csms_commands_charger_id_state_id", "charger_id", "state", "id"),
        Index("ix_csms_commands_op", "op", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    op: Mapped[str] = mapped_column(String(32), default=new_op)
    """The command's identity, carried by every ticket sealed for it: 16 random octets in hex
    (core/tickets.py `new_op`), never the row id, which a restored backup would reuse. The
    charger applies an op once (core/applied_ops.py); migration 0015."""
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(8))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(500))
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary)


class SourceHit(Base):
    """Requests from one source (an IPv4 address, an IPv6 /64) in one fixed window of the
    request-rate limit (fleet/source_limits.py): shared by every process on PostgreSQL."""

    __tablename__ = "source_hits"

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """The window's number: its start in seconds since the epoch, divided by its length."""
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[int]
