"""PIN generation: a re-key moves a charger to a sequence of PINs nobody has seen

Issue 9: a member who harvested PINs and was revoked must not know the charger's PIN again.
`chargers.generation` is the generation the fleet has committed (core.pin_state.PinState);
`pin_reveals.generation` says which generation's PIN an audited reveal showed. Every charger
made before is in generation 0, whose PINs are unchanged. A pending change written before has
no "generation" key in its JSON; fleet/tickets.py reads it as the committed generation.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("chargers", "pin_reveals"):
        op.add_column(
            table,
            sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    for table in ("pin_reveals", "chargers"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("generation")
