"""a tenant's own limits: requests per minute and USD per day and per 30 days

Per-key limits (0010) bound what one key may do; these bound a tenant across all its keys,
the keys file's included (tierline/gateway/quota.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_limits",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("requests_per_minute", sa.Integer()),
        sa.Column("usd_per_day", sa.Numeric(20, 10)),
        sa.Column("usd_per_month", sa.Numeric(20, 10)),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_limits")
