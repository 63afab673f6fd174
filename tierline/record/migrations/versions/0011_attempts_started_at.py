"""an index on attempts.started_at; versioned bundles

The cost guard (tierline/router/live/guard.py, tierline/record/spend.py) sums the calls started
in the last
window_s; the index keeps that a range scan however long the ledger grows. The bundles
table versions trained routing bundles (tierline/record/bundles.py, tierline router bundles).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_started_at", "attempts", ["started_at"])
    op.create_table(
        "bundles",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("promoted_at", sa.Float(), nullable=True),
        sa.Column("retired_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("bundles")
    op.drop_index("ix_attempts_started_at", table_name="attempts")
