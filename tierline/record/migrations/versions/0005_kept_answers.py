"""kept answers

A cascade deferred mid-climb (no token budget for the pricier tier) comes back later and
goes on from where it stopped, so the answers it already paid for are kept on their
attempt rows: ``content`` and ``finish_reason``. Only those attempts fill them; every
other attempt leaves them null, so the bulk insert of attempts does not grow.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("finish_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("finish_reason")
        batch_op.drop_column("content")
