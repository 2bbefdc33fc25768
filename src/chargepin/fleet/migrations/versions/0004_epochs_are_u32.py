"""epochs as BIGINT: an epoch is a u32 on the air

chargers.epoch and pin_reveals.epoch were INTEGER, which PostgreSQL stores as a signed 32-bit
number: an epoch from 2**31 to 2**32 - 1 (core.limits.MAX_EPOCH) could not be committed or
audited ("integer out of range"). BIGINT holds every u32; nothing is wider than one.

SQLite is left as it is: INTEGER and BIGINT are the same 64-bit storage there, and changing a
declared type means rebuilding the table, which with foreign keys on would cascade-delete the
chargers' memberships, invitations and audit rows.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (("chargers", "epoch"), ("pin_reveals", "epoch"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
