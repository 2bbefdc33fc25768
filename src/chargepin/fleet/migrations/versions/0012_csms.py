"""the fleet as an OCPP CSMS: connection registry, stations' security events, command outbox

Issue 10. `csms_connections` says which process holds each charger's WebSocket and when it was
last heard; `station_security_events` keeps the SecurityEventNotifications, unique per charger
and event id so a resend is stored once; `csms_commands` is the durable outbox of owner actions
for chargers. `chargers.csms_password_hash` holds the hash of a Basic auth password the fleet
rotated (None: the derived one).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("chargers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("csms_password_hash", sa.LargeBinary(), nullable=True))
    op.create_table(
        "csms_connections",
        sa.Column(
            "charger_id",
            sa.Integer(),
            sa.ForeignKey("chargers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("connection_id", sa.String(32), nullable=False),
        sa.Column("process", sa.String(128), nullable=False),
        sa.Column("connected_at", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("booted_at", TZ, nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("connector_status", sa.String(20), nullable=True),
    )
    op.create_table(
        "station_security_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "charger_id",
            sa.Integer(),
            sa.ForeignKey("chargers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("tech_info", sa.String(255), nullable=True),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.UniqueConstraint("charger_id", "event_id"),
    )
    op.create_index(
        "ix_station_security_events_charger_id_id",
        "station_security_events",
        ["charger_id", "id"],
    )
    op.create_table(
        "csms_commands",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "charger_id",
            sa.Integer(),
            sa.ForeignKey("chargers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column(
            "requested_by",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
    )
    op.create_index(
        "ix_csms_commands_charger_id_state_id", "csms_commands", ["charger_id", "state", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_csms_commands_charger_id_state_id", table_name="csms_commands")
    op.drop_table("csms_commands")
    op.drop_index("ix_station_security_events_charger_id_id", table_name="station_security_events")
    op.drop_table("station_security_events")
    op.drop_table("csms_connections")
    with op.batch_alter_table("chargers", schema=None) as batch_op:
        batch_op.drop_column("csms_password_hash")
