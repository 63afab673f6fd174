"""Reads and writes of the record: requests in, decisions, attempts, charges and results out.

Every write that a redelivered task could repeat is keyed and idempotent, and each kind of
row is written for a whole bundle in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Select, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from tierline.record import ahead
from tierline.record.db import (
    JOBS_CHANNEL,
    among,
    insert_ignore_together,
    insert_new,
    notify_jobs,
)
from tierline.record.schema import attempts, charges, decisions, jobs, requests, results
from tierline.router.envelope import Request
from tierline.router.live.decide import Decision

_MILLION = Decimal(1_000_000)


def create_job(conn: Connection, job_id: str, *, name: str | None, tenant: str, lane: str,
               now_s: float, expires_at: float | None = None) -> None:
    """Open a job, in state ``validating``, that requests are accepted into."""
    conn.execute(insert(jobs).values(id=job_id, name=name, tenant=tenant, lane=lane,
                                     status="validating", created_at=now_s, expires_at=expires_at,
                                     accepted=0, duplicates=0, rejected=0))


def add_job_counts(conn: Connection, job_id: str, *, accepted: int, duplicates: int,
                   rejected: int) -> None:
    """Add to a job's intake counters."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
        accepted=jobs.c.accepted + accepted, duplicates=jobs.c.duplicates + duplicates,
        rejected=jobs.c.rejected + rejected))


def set_job_counts(conn: Connection, job_id: str, *, accepted: int, duplicates: int,
                   rejected: int) -> None:
    """Set a job's intake counters (an intake run again recounts what it wrote before)."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
        accepted=accepted, duplicates=duplicates, rejected=rejected))


def count_requests(conn: Connection, job_id: str) -> int:
    """How many requests a job holds."""
    return int(conn.execute(select(func.count()).select_from(requests)
                            .where(requests.c.job_id == job_id)).scalar_one())


def accept_requests(conn: Connection, job_id: str | None, batch: Sequence[tuple[int, Request]],
                    *, routed_at: float | None = None, handed_on: bool = False) -> list[str]:
    """Write validated requests; returns the ids that are new (not a repeated idempotency key).
    With ``routed_at``, they are written ``routed``: their decisions follow in the same
    transaction (:func:`record_new_decisions`). ``handed_on``: they are noted as sent
    (``enqueued_at``) at once, since the writer answers them itself
    (tierline.workers.engine.inline), so the
    watchdog sends them again should it die before they end."""
    if not batch:
        return []
    rows = [request_row(r, job_id, seq, routed_at=routed_at, handed_on=handed_on)
            for seq, r in batch]
    new = insert_new(conn, requests, rows, "id")
    from tierline import metrics  # imported on first use: prometheus_client is not free

    metrics.accepted([r for _, r in batch], new)
    return new


def request_row(r: Request, job_id: str | None, seq: int, *, routed_at: float | None = None,
                handed_on: bool = False) -> dict[str, Any]:
    """The ``requests`` row of one validated request (see :func:`accept_requests`)."""
    return {
        "id": r.id, "job_id": job_id, "seq": seq, "tenant": r.tenant, "lane": r.lane,
        "idempotency_key": r.idempotency_key,
        "body": {"messages": list(r.messages), "metadata": r.metadata}
        | ({"stream": True} if r.stream else {}),
        "max_output_tokens": r.max_output_tokens, "latency_budget_s": r.latency_budget_s,
        "submitted_at": r.submitted_at, "deadline_at": r.deadline_at, "status": "accepted",
    } | ({} if routed_at is None else {"status": "routed", "touched_at": routed_at}) | (
        {"enqueued_at": routed_at} if handed_on and routed_at is not None else {})


def existing_ids(conn: Connection, tenant: str, keys: Sequence[str]) -> dict[str, str]:
    """Request ids already accepted under these idempotency keys, by key."""
    if not keys:
        return {}
    stmt = select(requests.c.idempotency_key, requests.c.id).where(
        requests.c.tenant == tenant, among(conn, requests.c.idempotency_key, keys))
    return {key: rid for key, rid in conn.execute(stmt)}


def mark_enqueued(conn: Connection, ids: Sequence[str], now_s: float) -> None:
    """Note that these requests were handed to the broker."""
    if ids:
        conn.execute(update(requests).where(among(conn, requests.c.id, ids))
                     .values(enqueued_at=now_s))


def unenqueued(conn: Connection, *, limit: int, submitted_before: float
               ) -> list[tuple[str, str]]:
    """(id, lane) of accepted requests never handed to the broker (e.g. it was down)."""
    stmt = (select(requests.c.id, requests.c.lane)
            .where(requests.c.status == "accepted", requests.c.enqueued_at.is_(None),
                   requests.c.submitted_at < submitted_before)
            .order_by(requests.c.submitted_at).limit(limit))
    return [(rid, lane) for rid, lane in conn.execute(stmt)]


def load_requests(conn: Connection, ids: Sequence[str]) -> list[Request]:
    """Requests by id, in the order given (missing ids are skipped)."""
    stmt = select(requests).where(among(conn, requests.c.id, ids))
    found = {row.id: request_of(row) for row in conn.execute(stmt)}
    return [found[i] for i in ids if i in found]


def request_of(row: Any) -> Request:
    """The request a ``requests`` row holds."""
    return Request(
        id=row.id, tenant=row.tenant, lane=row.lane,
        messages=tuple(row.body["messages"]), metadata=row.body.get("metadata") or {},
        max_output_tokens=row.max_output_tokens, latency_budget_s=row.latency_budget_s,
        submitted_at=row.submitted_at, deadline_at=row.deadline_at,
        idempotency_key=row.idempotency_key, stream=bool(row.body.get("stream")),
    )


def job_of(conn: Connection, ids: Sequence[str]) -> dict[str, str | None]:
    """Each request's job id."""
    stmt = select(requests.c.id, requests.c.job_id).where(among(conn, requests.c.id, ids))
    return {rid: job for rid, job in conn.execute(stmt)}


@dataclass
class OnRecord:
    """A request's attempts already recorded when its bundle comes back (after a deferral, a
    resume or a sweep): where its numbering and its result's totals go on, and the answers
    kept when it was deferred mid-climb, which it reuses instead of paying again."""

    next_seq: int = 0
    attempts: int = 0
    usd: Decimal = Decimal(0)
    kept: list[AttemptRow] = field(default_factory=list)


def on_record(conn: Connection, ids: Sequence[str]) -> dict[str, OnRecord]:
    """What these requests already have on record, in one query; requests with no attempts
    are left out. Only a bundle that comes back needs to ask."""
    stmt = select(attempts).where(among(conn, attempts.c.request_id, ids)).order_by(
        attempts.c.seq)
    found: dict[str, OnRecord] = {}
    for row in conn.execute(stmt):
        seen = found.setdefault(row.request_id, OnRecord())
        seen.next_seq = row.seq + 1
        seen.attempts += 1
        seen.usd += row.usd
        if row.content is not None:
            seen.kept.append(AttemptRow(
                row.request_id, row.seq, row.model, row.tier, row.ok, row.error, row.tokens_in,
                row.tokens_out, row.usage_estimated, row.latency_s, row.started_at, row.content,
                row.finish_reason))
    return found


def record_decisions(conn: Connection, made: Sequence[Decision], now_s: float
                     ) -> dict[str, Decision]:
    """Store decisions (first one wins on redelivery) and return the stored ones by request."""
    new = set(insert_new(conn, decisions, [{
        "request_id": d.request_id, "band": d.band, "score": d.score, "strategy": d.strategy,
        "tier": d.tier, "model": d.model, "reasons": d.reasons, "decided_at": now_s,
    } for d in made], "request_id"))
    ids = [d.request_id for d in made]
    conn.execute(update(requests).where(among(conn, requests.c.id, ids),
                                        requests.c.status == "accepted")
                 .values(status="routed", touched_at=now_s))
    stored = {d.request_id: d for d in made if d.request_id in new}
    # Only a concurrent redelivery can have stored another decision first: read those back.
    stored.update(load_decisions(conn, [i for i in ids if i not in new]))
    return stored


def record_new_decisions(conn: Connection, made: Sequence[Decision], now_s: float) -> None:
    """Store the decisions of requests written ``routed`` in this transaction (nothing can
    have decided them before: one statement, where :func:`record_decisions` needs three)."""
    if made:
        conn.execute(insert(decisions), [{
            "request_id": d.request_id, "band": d.band, "score": d.score,
            "strategy": d.strategy, "tier": d.tier, "model": d.model, "reasons": d.reasons,
            "decided_at": now_s} for d in made])


def defer(conn: Connection, ids: Sequence[str], *, not_before: float | None, now_s: float
          ) -> None:
    """Note that these requests' work moved (``touched_at``), and, for a wait longer than a
    countdown may take, when they may be sent again (``not_before``; the watchdog sends them)."""
    if ids:
        conn.execute(update(requests).where(among(conn, requests.c.id, ids))
                     .values(not_before=not_before, touched_at=now_s))


def load_decisions(conn: Connection, ids: Sequence[str]) -> dict[str, Decision]:
    """Stored decisions by request id."""
    if not ids:
        return {}
    stmt = select(decisions).where(among(conn, decisions.c.request_id, ids))
    return {row.request_id: Decision(row.request_id, row.band, row.score, row.strategy,
                                     row.tier, row.model, row.reasons)
            for row in conn.execute(stmt)}


def load_routable(conn: Connection, ids: Sequence[str], now_s: float
                  ) -> tuple[list[Request], dict[str, Decision]]:
    """In one query: the requests still to route or answer (no result yet, their job not
    cancelled, failed or past its window), in the order given, and their stored decisions."""
    pending, stored, _ = load_bundle(conn, ids, now_s)
    return pending, stored


def load_bundle(conn: Connection, ids: Sequence[str], now_s: float
                ) -> tuple[list[Request], dict[str, Decision], dict[str, str | None]]:
    """:func:`load_routable`, and every found request's job id (:func:`job_of`), in the
    same query: what a tier worker reads for a bundle."""
    found: dict[str, Request] = {}
    stored: dict[str, Decision] = {}
    job_ids: dict[str, str | None] = {}
    for row in conn.execute(_bundle_statement(conn.dialect.name), {"ids": list(ids)}):
        job_ids[row.id] = row.job_id
        halted = row.job_status in ("cancelled", "expired", "failed") or (
            row.expires_at is not None and row.expires_at < now_s)
        if row.finished is not None or halted:
            continue
        found[row.id] = request_of(row)
        if row.tier is not None:
            stored[row.id] = Decision(row.id, row.band, row.score, row.strategy, row.tier,
                                      row.model, row.reasons)
    return [found[i] for i in ids if i in found], stored, job_ids


@cache
def _bundle_statement(dialect: str) -> Select[Any]:
    """:func:`load_bundle`'s query, built once per dialect with its ids as one parameter:
    built anew for each bundle, its cache key alone cost more CPU than its execution's
    Python side."""
    ids: BindParameter[Any] = (bindparam("ids", type_=postgresql.ARRAY(requests.c.id.type))
                               if dialect == "postgresql" else bindparam("ids", expanding=True))
    where = requests.c.id == any_(ids) if dialect == "postgresql" else requests.c.id.in_(ids)
    return (select(requests, results.c.request_id.label("finished"),
                   jobs.c.status.label("job_status"), jobs.c.expires_at,
                   decisions.c.band, decisions.c.score, decisions.c.strategy, decisions.c.tier,
                   decisions.c.model, decisions.c.reasons)
            .select_from(requests.outerjoin(results, results.c.request_id == requests.c.id)
                         .outerjoin(decisions, decisions.c.request_id == requests.c.id)
                         .outerjoin(jobs, jobs.c.id == requests.c.job_id))
            .where(where))


@dataclass(frozen=True)
class AttemptRow:
    """One model call attempt, as the tier worker saw it."""

    request_id: str
    seq: int
    model: str
    tier: str
    ok: bool
    error: str | None
    tokens_in: int
    tokens_out: int
    usage_estimated: bool
    latency_s: float
    started_at: float
    content: str | None = None  # the answer, kept only for a request deferred mid-climb
    finish_reason: str | None = None  # with it

    @property
    def id(self) -> str:
        return f"{self.request_id}/{self.seq}"


def attempt_row(a: AttemptRow, price: Price, **extra: Any) -> dict[str, Any]:
    """The ``attempts`` row of one call, priced at ``price``."""
    return {"id": a.id, "request_id": a.request_id, "seq": a.seq, "model": a.model,
            "tier": a.tier, "ok": a.ok, "error": a.error, "tokens_in": a.tokens_in,
            "tokens_out": a.tokens_out, "usage_estimated": a.usage_estimated,
            "latency_s": a.latency_s, "usd": price.usd(a.tokens_in, a.tokens_out),
            "started_at": a.started_at, **extra}


def charge_row(a: AttemptRow, price: Price, tenant: str, lane: str, job_id: str | None,
               **extra: Any) -> dict[str, Any]:
    """The ``charges`` row of one call that used tokens: its tokens at its model's prices."""
    charged_at = a.started_at + a.latency_s
    return {"attempt_id": a.id, "request_id": a.request_id, "job_id": job_id,
            "tenant": tenant, "lane": lane, "model": a.model, "tokens_in": a.tokens_in,
            "tokens_out": a.tokens_out, "usd_per_1m_input": price.usd_per_1m_input,
            "usd_per_1m_output": price.usd_per_1m_output,
            "usd": price.usd(a.tokens_in, a.tokens_out), "usage_estimated": a.usage_estimated,
            "charged_at": charged_at, "day": int(charged_at // 86400), **extra}


@dataclass(frozen=True)
class ResultRow:
    """The final answer (or failure) of one request."""

    request_id: str
    status: str
    model: str | None
    content: str | None
    error: str | None
    finished_at: float
    detail: dict[str, Any] | None = None  # how a learned strategy accepted (answer, votes)


@dataclass(frozen=True)
class Price:
    """Unit prices in force for one model when the call was made."""

    usd_per_1m_input: Decimal
    usd_per_1m_output: Decimal

    def usd(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (tokens_in * self.usd_per_1m_input + tokens_out * self.usd_per_1m_output) / _MILLION


def record_outcomes(conn: Connection, made: Sequence[AttemptRow], done: Sequence[ResultRow],
                    prices: dict[str, Price], context: dict[str, Request],
                    jobs_by_request: dict[str, str | None],
                    earlier: Mapping[str, OnRecord] | None = None) -> None:
    """Write a bundle's attempts, charges and results (one statement for the three on
    Postgres, one per table elsewhere), end its requests and wake their jobs' waiters.

    A charge is the attempt's tokens at the attempt's prices; attempts that were never
    billed (no tokens either way) are recorded without a charge. A result counts its
    request's ``earlier`` attempts too (those of a bundle that came back), and clears the
    answers kept on them for its return.
    """
    # Kept answers are rare: a bundle without any leaves their columns out of the insert.
    keeps = any(a.content is not None for a in made)
    attempt_rows: list[dict[str, Any]] = []
    charge_rows: list[dict[str, Any]] = []
    for a in made:
        price = prices[a.model]
        attempt_rows.append(attempt_row(a, price))
        if keeps:
            attempt_rows[-1].update(content=a.content, finish_reason=a.finish_reason)
        if a.tokens_in or a.tokens_out:
            request = context[a.request_id]
            charge_rows.append(charge_row(a, price, request.tenant, request.lane,
                                          jobs_by_request.get(a.request_id)))
    spent = {rid: seen.usd for rid, seen in (earlier or {}).items()}
    count = {rid: seen.attempts for rid, seen in (earlier or {}).items()}
    for row in attempt_rows:
        spent[row["request_id"]] = spent.get(row["request_id"], Decimal(0)) + row["usd"]
        count[row["request_id"]] = count.get(row["request_id"], 0) + 1
    result_rows = [{
        "request_id": r.request_id, "status": r.status, "model": r.model, "content": r.content,
        "error": r.error, "attempts": count.get(r.request_id, 0),
        "usd": spent.get(r.request_id, Decimal(0)), "finished_at": r.finished_at,
        "latency_s": r.finished_at - context[r.request_id].submitted_at,
        "detail": r.detail} for r in done]
    # Their write-ahead rows are settled by these attempts: deleted later, in bulk (ahead.fold).
    new_attempts, _, _ = insert_ignore_together(
        conn, [(attempts, attempt_rows), (charges, charge_rows), (results, result_rows)])
    if new_attempts < len(attempt_rows):
        # Some were on record already: a redelivery's repeat (nothing to do), or calls folded
        # as of unknown outcome while this task still ran, which their real usage replaces
        # (the charge at the estimate, which kept this call's charge out, with it).
        ahead.settle_unknown(conn, attempt_rows, charge_rows)
    # Answers kept across a deferral served their purpose once the request has its result.
    returned = [r.request_id for r in done if (seen := (earlier or {}).get(r.request_id))
                and seen.kept]
    drop_kept_answers(conn, returned)
    _end_requests(conn, done, jobs_by_request)
    from tierline import metrics

    metrics.outcomes(made, done, {row["id"]: row["usd"] for row in attempt_rows}, context)


_ENDED_AS = {"ok": "done", "failed": "failed", "expired": "expired"}  # result -> request
# _end_requests' statement on Postgres: each request's status, unless it was cancelled or
# expired meanwhile (it keeps that one), and one notification per job, delivered at commit.
_END_REQUESTS = """
WITH ended AS (
    UPDATE requests SET status = ended.status
    FROM unnest(%b::text[], %b::text[]) AS ended(id, status)
    WHERE requests.id = ended.id AND requests.status IN ('accepted', 'routed'))
SELECT pg_notify(%s, job_id) FROM unnest(%b::text[]) AS job_id
"""


def _end_requests(conn: Connection, done: Sequence[ResultRow],
                  jobs_by_request: dict[str, str | None]) -> None:
    """Move the requests with a result to the status it gives, and wake their jobs' waiters
    (:func:`tierline.record.db.notify_jobs`): on Postgres in one statement, where it took
    two to four, each compiled anew."""
    ended = [(r.request_id, _ENDED_AS[r.status]) for r in done if r.status in _ENDED_AS]
    woken = sorted({job for r in done if (job := jobs_by_request.get(r.request_id))})
    if conn.dialect.name == "postgresql":
        if ended or woken:
            conn.exec_driver_sql(_END_REQUESTS, ([i for i, _ in ended], [s for _, s in ended],
                                                 JOBS_CHANNEL, woken))
        return
    for status in ("done", "failed", "expired"):
        ids = [i for i, s in ended if s == status]
        if ids:  # a request cancelled or expired meanwhile keeps that status
            conn.execute(update(requests).where(among(conn, requests.c.id, ids),
                                                requests.c.status.in_(("accepted", "routed")))
                         .values(status=status))
    notify_jobs(conn, woken)


def drop_kept_answers(conn: Connection, request_ids: Sequence[str]) -> None:
    """Clear the answers kept across a deferral for these requests' return: they have
    ended, with a result or without one."""
    if request_ids:
        conn.execute(update(attempts).where(among(conn, attempts.c.request_id, request_ids),
                                            attempts.c.content.is_not(None))
                     .values(content=None, finish_reason=None))


def job_counts(conn: Connection, job_id: str) -> dict[str, int]:
    """Requests of a job by status."""
    stmt = (select(requests.c.status, func.count()).where(requests.c.job_id == job_id)
            .group_by(requests.c.status))
    return {status: n for status, n in conn.execute(stmt)}


def iter_results(conn: Connection, job_id: str, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """A job's requests with their results, in input order, streamed."""
    stmt = (select(requests.c.id, requests.c.seq, requests.c.idempotency_key, requests.c.lane,
                   requests.c.status, results.c.status.label("result_status"), results.c.model,
                   results.c.content, results.c.error, results.c.usd, results.c.latency_s,
                   results.c.attempts, results.c.detail, decisions.c.tier, decisions.c.band,
                   decisions.c.reasons)
            .select_from(requests.outerjoin(results, results.c.request_id == requests.c.id)
                         .outerjoin(decisions, decisions.c.request_id == requests.c.id))
            .where(requests.c.job_id == job_id).order_by(requests.c.seq)
            .execution_options(yield_per=chunk))
    for row in conn.execute(stmt):
        yield {
            "id": row.id, "key": row.idempotency_key, "lane": row.lane, "status": row.status,
            "model": row.model, "tier": row.tier, "band": row.band, "content": row.content,
            "error": row.error, "usd": None if row.usd is None else str(row.usd),
            "latency_s": row.latency_s, "attempts": row.attempts,
            "reason": (row.reasons or {}).get("rule"), "detail": row.detail,
        }


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items, read lazily."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
