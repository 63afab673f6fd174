"""shadow calls in the ledger; shadow outcomes

Live shadow evaluation (tierline/workers/engine/shadow.py) marks its attempts and charges
``shadow`` and
records each shadowed request's graded answers in ``shadow_outcomes``, which the nightly
retraining reads back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("attempts", "charges"):
        op.add_column(table, sa.Column("shadow", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.create_table(
        "shadow_outcomes",
        sa.Column("id", sa.String(300), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("top_model", sa.String(200), nullable=False),
        sa.Column("agrees_with_top", sa.Boolean(), nullable=True),
        sa.Column("gold_label", sa.Text(), nullable=True),
        sa.Column("agrees_with_gold", sa.Boolean(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_outcomes_request_id", "shadow_outcomes", ["request_id"])
    op.create_index("ix_shadow_outcomes_day", "shadow_outcomes", ["day"])


def downgrade() -> None:
    op.drop_index("ix_shadow_outcomes_day", table_name="shadow_outcomes")
    op.drop_index("ix_shadow_outcomes_request_id", table_name="shadow_outcomes")
    op.drop_table("shadow_outcomes")
    for table in ("charges", "attempts"):
        op.drop_column(table, "shadow")
