"""batch intake in the background

A batch is created before its input file is read: its row and its job (``validating``) are
written first, and a task reads the file into the job. The batch row records when that
task was handed to the broker (``enqueued_at``; null until then, so the sweeper hands it
over again after a broker outage) and when the file had been read (``in_progress_at``).
Batches created before this revision were read before their row was written, so both
take the row's ``created_at``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enqueued_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("in_progress_at", sa.Float(), nullable=True))
    op.execute("UPDATE batches SET enqueued_at = created_at, in_progress_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("in_progress_at")
        batch_op.drop_column("enqueued_at")
