"""the audit and the security events paged by id, per charger

Issue 9: a member pushed their PIN reveals out of the owner's audit (the newest 1,000) by
revealing 1,000 times. Both lists are now paged by keyset (`before` = the last id seen, newest
first); these indexes serve each page from the charger's rows in id order, without sorting all
of a charger's rows (PostgreSQL's index on charger_id alone does not give id order).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pin_reveals", schema=None) as batch_op:
        batch_op.create_index("ix_pin_reveals_charger_id_id", ["charger_id", "id"])
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index("ix_security_events_charger_id_id", ["charger_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index("ix_security_events_charger_id_id")
    with op.batch_alter_table("pin_reveals", schema=None) as batch_op:
        batch_op.drop_index("ix_pin_reveals_charger_id_id")
