"""claim sources: wrong claim codes counted per source

Issue 9: the per-charger claim lock let five wrong codes from strangers refuse the installer's
own sticker. Wrong codes are now counted per account (users.claim_lockout, as before) and per
source, an IPv4 address or an IPv6 /64 (this table); chargers.claim_lockout is no longer used.

Claim-code digests become keyed (fleet/claims.py code_digest) in the same column: bare SHA-256
digests written before stay valid (they are 32 bytes, the keyed ones 41) and are never
rewritten (the codes are not known), so no data changes here.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claim_sources",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("claim_lockout", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )


def downgrade() -> None:
    op.drop_table("claim_sources")
