"""pin reveals: one index by charger, not two

0002 indexed pin_reveals by charger_id; 0009 added (charger_id, id) for the audit's keyset
pages. The second serves every lookup the first did, with charger_id as its prefix: the audit
list, a revocation's "did this member see PINs" count, and on PostgreSQL the cascade of a
deleted charger. The first only cost every reveal (the service's hot path) one more index
entry to write, and the database its pages (issue 12).

On PostgreSQL DROP INDEX holds the table's exclusive lock for the moment it takes (no rows are
read); in the migration's transaction, so not CONCURRENTLY.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_pin_reveals_charger_id", table_name="pin_reveals")


def downgrade() -> None:
    op.create_index("ix_pin_reveals_charger_id", "pin_reveals", ["charger_id"], unique=False)
