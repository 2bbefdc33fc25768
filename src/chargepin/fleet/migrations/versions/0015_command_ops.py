"""command ops: every outbox command's own identity, so a charger applies it once

Issue 12 (exactly once): a command whose answer was lost is sent again, sealed for a new
challenge; the ticket carries the command's `op` (16 random octets in hex, core/tickets.py), and
the charger answers an op it already applied without applying it again (core/applied_ops.py).
A random value, not the row id: a restored backup or a second database reuses ids. Commands
queued before this revision get one here (random, in Python, the same on both databases); a
command of theirs whose ticket went out before the upgrade was sent without it, and its repeat
may still be applied twice (docs/OCPP.md, "What a killed gateway costs").

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("csms_commands", sa.Column("op", sa.String(length=32), nullable=True))
    connection = op.get_bind()
    commands = sa.table("csms_commands", sa.column("id", sa.Integer), sa.column("op", sa.String))
    while True:
        ids = connection.scalars(
            sa.select(commands.c.id).where(commands.c.op.is_(None)).limit(_BATCH)
        ).all()
        if not ids:
            break
        connection.execute(
            commands.update().where(commands.c.id == sa.bindparam("row")),
            [{"row": row, "op": secrets.token_bytes(16).hex()} for row in ids],
        )
    with op.batch_alter_table("csms_commands") as batch:
        batch.alter_column("op", existing_type=sa.String(length=32), nullable=False)
        batch.create_index("ix_csms_commands_op", ["op"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("csms_commands") as batch:
        batch.drop_index("ix_csms_commands_op")
        batch.drop_column("op")
