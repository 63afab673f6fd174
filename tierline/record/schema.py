"""The record in Postgres (or SQLite when embedded): tables as SQLAlchemy Core metadata.

Times are UNIX seconds (``*_at``, float) so that day and hour rollups are plain arithmetic
on every database; money is ``Numeric`` so the ledger adds up exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()
USD = Numeric(20, 10)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200)),
    Column("tenant", String(128), nullable=False),
    Column("lane", String(16), nullable=False),
    # validating | in_progress | completed | failed | cancelling | cancelled | expired
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("expires_at", Float),  # the completion window: unanswered requests expire then
    Column("error", Text),
    Column("accepted", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", String(36), ForeignKey("jobs.id")),  # see ix_requests_job_id_status
    Column("seq", Integer),  # position in the job's input, so results come back in order
    Column("tenant", String(128), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("idempotency_key", String(256)),
    Column("body", JSON, nullable=False),  # messages and metadata
    Column("max_output_tokens", Integer, nullable=False),
    Column("latency_budget_s", Float, nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("deadline_at", Float, nullable=False),
    Column("enqueued_at", Float),  # null: accepted but not yet handed to the broker
    # accepted | routed | done | failed | cancelled | expired
    Column("status", String(16), nullable=False),
    Column("not_before", Float),  # deferred past a countdown's reach: not sent before this
    Column("touched_at", Float),  # its work last moved (routed, deferred, re-enqueued)
    UniqueConstraint("tenant", "idempotency_key", name="uq_requests_tenant_idempotency_key"),
)
Index("ix_requests_job_id_status", requests.c.job_id, requests.c.status)
# The sweeper's question (accepted but never enqueued) on a small partial index: a full
# index on status would be rewritten by every status change of every request.
Index("ix_requests_unenqueued", requests.c.submitted_at,
      postgresql_where=requests.c.enqueued_at.is_(None),
      sqlite_where=requests.c.enqueued_at.is_(None))

# The watchdog's question (requests still in flight) reads only those (tierline.schedules.watchdog).
Index("ix_requests_unfinished", requests.c.deadline_at,
      postgresql_where=requests.c.status.in_(("accepted", "routed")),
      sqlite_where=requests.c.status.in_(("accepted", "routed")))

decisions = Table(
    "decisions",
    metadata,
    Column("request_id", String(36), ForeignKey("requests.id"), primary_key=True),
    Column("band", String(8), nullable=False),
    Column("score", Float, nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("decided_at", Float, nullable=False),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(80), primary_key=True),  # "<request id>/<seq>": same call, same key
    Column("request_id", String(36), ForeignKey("requests.id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("usage_estimated", Boolean, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("usd", USD, nullable=False),
    Column("started_at", Float, nullable=False, index=True),  # the cost guard's window
    # The answer, kept only when its request was deferred mid-climb: it goes on from there
    # when it comes back instead of paying the call again. Null on every other attempt.
    Column("content", Text),
    Column("finish_reason", String(32)),
    # A shadow call (tierline.workers.engine.shadow): paid to grade the routing, not to answer
    # the request.
    Column("shadow", Boolean, nullable=False, default=False, server_default=false()),
)

# Write-ahead attempts: one row per call, written before the provider is called and
# deleted in the transaction that records the call's real attempt. A row that outlives its
# task (the worker was killed after the call, or the write after it failed for good) is a
# call of unknown outcome: it is folded into ``attempts`` and ``charges`` at its reserved
# estimate (tierline.record.ahead), so no paid call is missing from the ledger.
pending_attempts = Table(
    "pending_attempts",
    metadata,
    Column("id", String(80), primary_key=True),  # the attempt's id: "<request id>/<seq>"
    # No other index: the table holds only the calls in flight, so the rare reads by
    # request or age scan it, and each round's insert and delete stay cheap.
    Column("request_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("tokens_in", Integer, nullable=False),  # reserved: the prompt's estimate
    Column("tokens_out", Integer, nullable=False),  # reserved: the output cap
    Column("usd_per_1m_input", USD, nullable=False),
    Column("usd_per_1m_output", USD, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("shadow", Boolean, nullable=False, default=False, server_default=false()),
)

results = Table(
    "results",
    metadata,
    Column("request_id", String(36), ForeignKey("requests.id"), primary_key=True),
    Column("status", String(16), nullable=False),  # ok | failed | cancelled | expired
    Column("model", String(200)),
    Column("content", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("usd", USD, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("latency_s", Float, nullable=False),  # submitted → finished
    # How a learned strategy accepted: the answer read from the response, whether several
    # models agreed on it, the judge's confidence, the chain of calls.
    Column("detail", JSON),
)

charges = Table(
    "charges",
    metadata,
    Column("attempt_id", String(80), ForeignKey("attempts.id"), primary_key=True),
    Column("request_id", String(36), nullable=False, index=True),
    Column("job_id", String(36), index=True),
    Column("tenant", String(128), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("model", String(200), nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("usd_per_1m_input", USD, nullable=False),
    Column("usd_per_1m_output", USD, nullable=False),
    Column("usd", USD, nullable=False),
    Column("usage_estimated", Boolean, nullable=False),
    Column("charged_at", Float, nullable=False),
    Column("day", Integer, nullable=False, index=True),  # UTC day number: charged_at // 86400
    Column("shadow", Boolean, nullable=False, default=False, server_default=false()),
)

# Uploaded files (OpenAI's Files API, for batch input), kept whole in the database so any
# host's gateway can read them.
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("filename", String(512), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("content", LargeBinary, nullable=False),
)
Index("ix_files_tenant_purpose_created_at", files.c.tenant, files.c.purpose, files.c.created_at)

# What an OpenAI-style batch adds to its job (the job's id is the batch's, prefixed): its
# input file, metadata and the input lines it refused, with their reasons. The row and the
# job are written first; a task then reads the file into the job (tierline.producer.batch_intake).
batches = Table(
    "batches",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id"), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("metadata", JSON),
    Column("rejected", JSON, nullable=False),  # [[line, custom_id, reason], ...], once read
    Column("created_at", Float, nullable=False),
    Column("enqueued_at", Float),  # the intake task last handed to the broker; null: not yet
    Column("in_progress_at", Float),  # the file was read, its requests written
)
Index("ix_batches_tenant_created_at", batches.c.tenant, batches.c.created_at)

# Periodic reports of the record (``tierline.record.period_report``), written once per kind and
# period: ``body`` is the report as JSON, money in it as decimal strings.
reports = Table(
    "reports",
    metadata,
    Column("kind", String(16), primary_key=True),  # daily
    Column("period_start", Float, primary_key=True),
    Column("period_end", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", JSON, nullable=False),
)

# Trained routing bundles, versioned: at most one is promoted (the one to route with); a
# rollback promotes the one promoted before it again (tierline/record/bundles.py).
bundles = Table(
    "bundles",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("label", String(200), nullable=False),  # the operating point, e.g. "value-3$ δ=0.3"
    Column("path", Text, nullable=False),  # BUNDLE.npz + BUNDLE.json on disk
    Column("policy", JSON, nullable=False),  # the tiers and strategy that use it
    Column("metrics", JSON, nullable=False),  # how it was validated when trained
    Column("status", String(16), nullable=False),  # candidate | promoted | retired
    Column("promoted_at", Float),
    Column("retired_at", Float),
)


# The gateway's API keys (``tierline keys create``): only the SHA-256 of each key is kept.
# Limits are per key; null means none. A revoked or expired key is refused.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(200)),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("requests_per_minute", Integer),
    Column("usd_per_day", USD),
    Column("usd_per_month", USD),
)

# A tenant's own limits, across all its keys and the keys file's (tierline keys limit).
tenant_limits = Table(
    "tenant_limits",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("requests_per_minute", Integer),
    Column("usd_per_day", USD),
    Column("usd_per_month", USD),
    Column("updated_at", Float, nullable=False),
)


# Live shadow evaluation (tierline.workers.engine.shadow): per shadowed request, the answer it
# was given
# (``shadow`` false: paid as production) and each shadow call's, graded against the top
# tier's answer and, where a classification job has one, the gold label. Nightly
# retraining reads it back as traffic records (tierline.router.learned.traffic).
shadow_outcomes = Table(
    "shadow_outcomes",
    metadata,
    Column("id", String(300), primary_key=True),  # "<request id>/<model>"
    Column("request_id", String(36), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("response", Text, nullable=False),
    Column("answer", Text),  # extracted, else normalised; null when empty
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("usd", USD, nullable=False),
    Column("top_model", String(200), nullable=False),
    Column("agrees_with_top", Boolean),  # null: the top tier gave no answer
    Column("gold_label", Text),
    Column("agrees_with_gold", Boolean),
    Column("recorded_at", Float, nullable=False),
    Column("day", Integer, nullable=False, index=True),
)
