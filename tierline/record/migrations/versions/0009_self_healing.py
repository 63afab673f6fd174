"""self-healing: deferrals kept on the request, progress marks, the watchdog's index

``requests.not_before``: a request deferred for longer than a countdown message may wait
(see tierline.config.lease) is not sent again before this time; the watchdog re-enqueues it then.
``requests.touched_at``: the last time its work moved (routed, deferred, re-enqueued); the
watchdog re-enqueues a request that has not moved for longer than its lane allows.
``ix_requests_unfinished``: the watchdog's question (unfinished requests) on a partial index,
so it reads only the requests still in flight.
``pending_attempts``: write-ahead attempts, one row per call written before the provider is
called and deleted when the call's attempt is recorded; one left behind is a call of
unknown outcome, folded into the ledger at its reserved estimate (tierline.record.ahead).

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
USD = sa.Numeric(20, 10)


def upgrade() -> None:
    op.create_table(
        "pending_attempts",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("usd_per_1m_input", USD, nullable=False),
        sa.Column("usd_per_1m_output", USD, nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Rows live for the length of one bundle: not worth a WAL record each. A Postgres
        # crash empties the table, which loses only calls whose worker also failed to
        # record them (a worker holds its answers and retries the write until Postgres is back).
        op.execute("ALTER TABLE pending_attempts SET UNLOGGED")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("touched_at", sa.Float(), nullable=True))
    op.create_index("ix_requests_unfinished", "requests", ["deadline_at"],
                    postgresql_where=sa.text(UNFINISHED), sqlite_where=sa.text(UNFINISHED))


def downgrade() -> None:
    op.drop_table("pending_attempts")
    op.drop_index("ix_requests_unfinished", table_name="requests")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("touched_at")
        batch_op.drop_column("not_before")
