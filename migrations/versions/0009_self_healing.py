"""self-healing: deferrals kept on the request, progress marks, the watchdog's index

``requests.not_before``: a request deferred for longer than a countdown message may wait
(see workers.lease) is not sent again before this time; the watchdog re-enqueues it then.
``requests.touched_at``: the last time its work moved (routed, deferred, re-enqueued); the
watchdog re-enqueues a request that has not moved for longer than its lane allows.
``ix_requests_unfinished``: the watchdog's question (unfinished requests) on a partial index,
so it reads only the requests still in flight.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('accepted', 'routed')"


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("touched_at", sa.Float(), nullable=True))
    op.create_index("ix_requests_unfinished", "requests", ["deadline_at"],
                    postgresql_where=sa.text(UNFINISHED), sqlite_where=sa.text(UNFINISHED))


def downgrade() -> None:
    op.drop_index("ix_requests_unfinished", table_name="requests")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("touched_at")
        batch_op.drop_column("not_before")
