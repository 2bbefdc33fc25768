"""security events and invitations indexed by charger

The owner's event list (GET /chargers/{serial}/events, newest first) and the phones of a
revoked member read one charger's events; inviting reads one charger's open invitations for an
address. Without these indexes each is a scan of the whole fleet's rows.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index("ix_security_events_charger_id_at", ["charger_id", "at"])
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index("ix_invitations_charger_id_email", ["charger_id", "email"])


def downgrade() -> None:
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_invitations_charger_id_email")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index("ix_security_events_charger_id_at")
