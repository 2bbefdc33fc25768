"""source hits: the per-source request counters every worker process sees

Issue 12 (limits): a client address's requests are counted per fixed window in this table (an
UPSERT per request on PostgreSQL), so the request-rate limit holds however many API and gateway
processes serve the fleet (fleet/source_limits.py). The key leads with the window, so the
windows that ended are deleted by a range of the primary key.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_hits",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "source"),
    )


def downgrade() -> None:
    op.drop_table("source_hits")
