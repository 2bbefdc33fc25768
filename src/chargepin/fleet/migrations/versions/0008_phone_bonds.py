"""phone bonds: the phones a charger vouched for, per member

Issue 9: a member reported the owner's Bluetooth address as their phone, and revoking the
member listed it for removal. The phones revocation lists now come from the charger's bond
statements (core.bond_statement), one row per charger and address. Addresses members reported
before (security_events of kind phone_address) stay in the event log and are no longer listed:
nothing vouches for them; each phone appears again when it next pairs.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phone_bonds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charger_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=19), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("bond", sa.LargeBinary(length=8), nullable=False),
        sa.Column("attested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["charger_id"], ["chargers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("charger_id", "address"),
    )


def downgrade() -> None:
    op.drop_table("phone_bonds")
