"""login throttles and claim sources say when they may be forgotten

Issue 9: the rows of migrations 0005 and 0006 were never deleted, so a stream of failures from
ever new sources (or made-up account addresses) grew them without bound. Each row now carries
`forget_after`, the moment from which it decides nothing a missing row would not
(core.login_throttle, core.claims), indexed so that expired rows are found without a scan;
fleet/pruning.py deletes them.

Rows written before this revision get the migration's time plus two days, which is past the
longest any of them can matter (a 24 h lock at most, whose growth window is 24 h): they are
kept a little long, never forgotten early, and get their exact time at their next write.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("login_throttles", "claim_sources")
EXISTING_ROWS_KEPT = dt.timedelta(days=2)


def upgrade() -> None:
    until = dt.datetime.now(dt.UTC) + EXISTING_ROWS_KEPT
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("forget_after", sa.DateTime(timezone=True)))
        table = sa.table(name, sa.column("forget_after", sa.DateTime(timezone=True)))
        op.execute(table.update().values(forget_after=until))
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.alter_column(
                "forget_after", existing_type=sa.DateTime(timezone=True), nullable=False
            )
            batch_op.create_index(f"ix_{name}_forget_after", ["forget_after"])


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{name}_forget_after")
            batch_op.drop_column("forget_after")
