"""an index on attempts.started_at

The cost guard (router/guard.py, workers/spend.py) sums the calls started in the last
window_s; the index keeps that a range scan however long the ledger grows.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_started_at", "attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_started_at", table_name="attempts")
