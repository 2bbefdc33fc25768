"""presence nonces: a device proves it is the charger before the app types its PIN

Issue 9 point 8: the app typed the fleet's PIN into whatever device advertised the serial, and
a fake charger learns passkey bits as the responder. The fleet now issues single-use nonces
(this table, so any worker can check one) and answers the pairing PIN only for a device's
proof on one of them (fleet/presence.py, core/presence.py).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "presence_nonces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charger_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("nonce_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["charger_id"], ["chargers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce_hash"),
    )
    op.create_index(
        "ix_presence_nonces_charger_id_user_id", "presence_nonces", ["charger_id", "user_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_presence_nonces_charger_id_user_id", table_name="presence_nonces")
    op.drop_table("presence_nonces")
