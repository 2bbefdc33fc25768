"""login_throttles: wrong passwords counted per account and per source address

One row per account address typed at /login (known or not) and per client address, holding
the core lockout state (core/login_throttle.py). Rows are created on the first attempt and
locked FOR UPDATE by the request that judges the next one.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("state", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_throttles")
