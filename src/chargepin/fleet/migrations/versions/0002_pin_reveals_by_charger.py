"""pin reveals indexed by charger

The owner's audit list (GET /chargers/{serial}/reveals) reads one charger's reveals; without
an index that is a scan of every reveal in the fleet, which grows with every PIN shown.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pin_reveals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pin_reveals_charger_id"), ["charger_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pin_reveals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pin_reveals_charger_id"))
