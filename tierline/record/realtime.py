"""The record side of one realtime call through the gateway: accepted in one statement
(one transaction on SQLite), its answer read in one query.

``Client.submit_many`` is built for files of any size (a job opened, requests in chunks,
counts and state written after, four transactions); a chat call is one request, so its job
is written already ``in_progress`` with its counts, with the request.

The hot statements go to psycopg as fixed text: built and compiled by SQLAlchemy for each
call, they cost more of the gateway's CPU than their execution (bench/RESULTS.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    Engine,
    Select,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from tierline.record import records
from tierline.record.schema import attempts, decisions, jobs, requests, results
from tierline.router.envelope import Request
from tierline.router.live.decide import Decision

ENDED = ("done", "failed", "expired", "cancelled")
T = TypeVar("T")


def pooled(engine: Engine, connections: int) -> Engine:
    """An engine on the same Postgres database whose pool keeps ``connections`` open: a
    gateway answering many calls at once on the shared engine's 5 kept connections opens
    and closes an overflow connection for most of them. It does not ping a connection
    before each use (a round trip per checkout, two or three per call): a connection the
    database dropped fails its first statement, SQLAlchemy then drops the whole pool, and
    :func:`once_more` runs the call again. SQLite's engine is returned as is."""
    if engine.dialect.name != "postgresql":
        return engine
    return create_engine(engine.url, pool_size=connections, max_overflow=0,
                         pool_recycle=600, pool_timeout=30)


def once_more(call: Callable[[], T]) -> T:
    """``call()``, run a second time if its connection turned out to be dead (the database
    restarted, or dropped it). A dead connection fails its first statement, so nothing was
    written; in the rare case that it died at the commit, the second run finds the rows
    written and fails, and the caller gets an error for a request that stands."""
    try:
        return call()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return call()


@dataclass(frozen=True)
class Accepted:
    request_id: str
    job_id: str
    new: bool  # False: the idempotency key was seen before; these are the earlier request's


def accept_one(engine: Engine, request: Request, *, job_name: str, now_s: float,
               decision: Decision | None = None, handed_on: bool = False) -> Accepted:
    """Write one request and its job, and its routing ``decision`` if it was decided already
    (the request is then ``routed``, as the router worker would leave it, and with
    ``handed_on`` noted as sent: the caller answers it itself, tierline.workers.engine.inline);
    a repeated
    idempotency key writes no request and no decision, and the job (completed at once,
    counting one duplicate) points to nothing new."""
    job_id = request.id  # one request, one job: the same id names both
    if engine.dialect.name == "postgresql":
        return _accept_one_statement(engine, request, job_name=job_name, now_s=now_s,
                                     decision=decision, handed_on=handed_on)
    with engine.begin() as conn:
        conn.execute(insert(jobs).values(
            id=job_id, name=job_name, tenant=request.tenant, lane=request.lane,
            status="in_progress", created_at=now_s, expires_at=None, accepted=1,
            duplicates=0, rejected=0))
        if records.accept_requests(conn, job_id, [(0, request)],
                                   routed_at=None if decision is None else now_s,
                                   handed_on=handed_on):
            if decision is not None:
                records.record_new_decisions(conn, [decision], now_s)
            return Accepted(request.id, job_id, True)
        earlier = conn.execute(select(requests.c.id, requests.c.job_id).where(
            requests.c.tenant == request.tenant,
            requests.c.idempotency_key == request.idempotency_key)).one()
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(
            accepted=0, duplicates=1, status="completed", finished_at=now_s))
    return Accepted(earlier.id, earlier.job_id, False)


_REQUEST_COLUMNS = ("id", "job_id", "seq", "tenant", "lane", "idempotency_key", "body",
                    "max_output_tokens", "latency_budget_s", "submitted_at", "deadline_at",
                    "status", "touched_at", "enqueued_at")
# accept_one's statement on Postgres: the request, then (only if it is new) its job and its
# decision. One statement needs no transaction (no BEGIN and COMMIT round trips), and its
# foreign keys are checked at its end, when all three rows are there.
_ACCEPT = f"""
WITH request AS (
    INSERT INTO requests ({", ".join(_REQUEST_COLUMNS)})
    VALUES ({", ".join(f"%({c})s::json" if c == "body" else f"%({c})s"
                       for c in _REQUEST_COLUMNS)})
    ON CONFLICT DO NOTHING RETURNING id),
job AS (
    INSERT INTO jobs (id, name, tenant, lane, status, created_at, accepted, duplicates, rejected)
    SELECT id, %(job_name)s, %(tenant)s, %(lane)s, 'in_progress', %(now_s)s, 1, 0, 0
    FROM request)
"""
_DECIDED = """,
decision AS (
    INSERT INTO decisions (request_id, band, score, strategy, tier, model, reasons, decided_at)
    SELECT id, %(band)s, %(score)s, %(strategy)s, %(tier)s, %(model)s, %(reasons)s::json,
           %(now_s)s
    FROM request)
"""


def _accept_one_statement(engine: Engine, request: Request, *, job_name: str, now_s: float,
                          decision: Decision | None, handed_on: bool) -> Accepted:
    """:func:`accept_one` on Postgres: the new request, its job and its decision in one
    statement, outside a transaction; a repeated key then writes its job (completed at once,
    counting one duplicate) and reads the earlier request, in one transaction."""
    row = records.request_row(request, request.id, 0,
                              routed_at=None if decision is None else now_s,
                              handed_on=handed_on)
    params = {c: row.get(c) for c in _REQUEST_COLUMNS} | {
        "body": json.dumps(row["body"]), "job_name": job_name, "now_s": now_s}
    sql = _ACCEPT
    if decision is not None:
        sql += _DECIDED
        params |= {"band": decision.band, "score": decision.score,
                   "strategy": decision.strategy, "tier": decision.tier,
                   "model": decision.model, "reasons": json.dumps(decision.reasons)}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        new = [r[0] for r in conn.exec_driver_sql(sql + "SELECT id FROM request", params)]
    from tierline import metrics

    metrics.accepted([request], new)
    if new:
        return Accepted(request.id, request.id, True)
    with engine.begin() as conn:
        conn.execute(insert(jobs).values(
            id=request.id, name=job_name, tenant=request.tenant, lane=request.lane,
            status="completed", created_at=now_s, finished_at=now_s, expires_at=None,
            accepted=0, duplicates=1, rejected=0))
        earlier = conn.execute(select(requests.c.id, requests.c.job_id).where(
            requests.c.tenant == request.tenant,
            requests.c.idempotency_key == request.idempotency_key)).one()
    return Accepted(earlier.id, earlier.job_id, False)


def _answer_statement() -> Select[Any]:
    """The one statement :func:`answer_of` runs, built once (its building cost more CPU than
    its execution's Python side): the request, its result, its tier and its attempts' tokens."""
    request_id: BindParameter[str] = bindparam("request_id")
    tokens_in = (select(func.sum(attempts.c.tokens_in))
                 .where(attempts.c.request_id == request_id).scalar_subquery())
    tokens_out = (select(func.sum(attempts.c.tokens_out))
                  .where(attempts.c.request_id == request_id).scalar_subquery())
    tier = (select(decisions.c.tier).where(decisions.c.request_id == request_id)
            .limit(1).scalar_subquery())
    return (select(requests.c.id, requests.c.job_id, requests.c.lane, requests.c.status,
                   requests.c.submitted_at, results.c.model, results.c.content,
                   results.c.error, results.c.usd, tier.label("tier"),
                   tokens_in.label("tokens_in"), tokens_out.label("tokens_out"))
            .select_from(requests.outerjoin(results, results.c.request_id == requests.c.id))
            .where(requests.c.id == request_id))


_ANSWER = _answer_statement()


@cache
def _answer_sql(dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """:data:`_ANSWER`'s text for ``dialect`` and its fixed parameters (the limit): executed
    as text, it skips SQLAlchemy's cache lookup and result processing (psycopg gives the
    same Python types)."""
    compiled = _ANSWER.compile(dialect=dialect)
    return str(compiled), dict(compiled.params)


def answer_of(engine: Engine, request_id: str) -> dict[str, Any]:
    """A request's state and, once it ended, its answer: the fields of ``Client.results``
    the gateway shows, when it was submitted, and the tokens of every attempt (billed)."""
    # One statement, so no transaction: none to begin and roll back (two round trips).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.dialect.name == "postgresql":  # its text, compiled once, straight to psycopg
            sql, defaults = _answer_sql(conn.dialect)
            row = conn.exec_driver_sql(sql, defaults | {"request_id": request_id}).one()
        else:
            row = conn.execute(_ANSWER, {"request_id": request_id}).one()
    answer = dict(row._mapping)
    usd: Decimal | None = answer["usd"]
    answer["usd"] = None if usd is None else str(usd)
    return answer


def status_of(engine: Engine, request_id: str) -> str | None:
    """A request's status, None when there is no such row (yet)."""
    with engine.connect() as conn:
        status: str | None = conn.execute(select(requests.c.status)
                                          .where(requests.c.id == request_id)).scalar()
    return status


def mark_enqueued(engine: Engine, request_ids: list[str], now_s: float) -> None:
    """Note that these requests were handed to the broker (off the answer's path): on
    Postgres one statement outside a transaction, its text fixed."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            records.mark_enqueued(conn, request_ids, now_s)
        return
    if request_ids:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("UPDATE requests SET enqueued_at = %s WHERE id = ANY(%b::text[])",
                                 (now_s, request_ids))
