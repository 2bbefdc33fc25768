"""OCPP gateways: each process serving chargers' WebSockets, with its heartbeat

Issue 12. `csms_gateways` has a row per process that serves OCPP (`fleet serve`, `fleet
gateway`), its `last_seen` written every few seconds (fleet/csms/gateways.py);
`csms_connections.process` names the gateway holding the charger, so a gateway whose heartbeat
stopped (kill -9) has its chargers shown offline within seconds, before their own grace ends.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "csms_gateways",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
    )
    op.create_index("ix_csms_connections_process", "csms_connections", ["process"])


def downgrade() -> None:
    op.drop_index("ix_csms_connections_process", table_name="csms_connections")
    op.drop_table("csms_gateways")
