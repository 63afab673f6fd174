"""The record side of one realtime call through the gateway: accepted in one transaction,
its answer read in one query.

``Client.submit_many`` is built for files of any size (a job opened, requests in chunks,
counts and state written after, four transactions); a chat call is one request, so its job
is written already ``in_progress`` with its counts, in the same transaction as the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
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


def answer_of(engine: Engine, request_id: str) -> dict[str, Any]:
    """A request's state and, once it ended, its answer: the fields of ``Client.results``
    the gateway shows, when it was submitted, and the tokens of every attempt (billed)."""
    # One statement, so no transaction: none to begin and roll back (two round trips).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
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
    """Note that these requests were handed to the broker (off the answer's path)."""
    with engine.begin() as conn:
        records.mark_enqueued(conn, request_ids, now_s)
