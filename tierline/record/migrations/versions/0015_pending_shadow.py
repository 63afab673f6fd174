"""write-ahead rows of shadow calls are marked shadow

A shadow call (tierline/workers/engine/shadow.py) whose worker dies mid-call is folded into the
ledger as
a shadow attempt and charge of unknown outcome, never as one of its request's own calls.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pending_attempts", sa.Column("shadow", sa.Boolean(), nullable=False,
                                                server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("pending_attempts", "shadow")
