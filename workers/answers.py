"""Reading one request's answer for the gateway: its job, its status, and the tokens billed."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from workers.schema import attempts, requests


def job_of(engine: Engine, request_id: str) -> str:
    """The job that holds a request (a repeated idempotency key's is an earlier job)."""
    with engine.connect() as conn:
        return str(conn.execute(select(requests.c.job_id)
                                .where(requests.c.id == request_id)).scalar_one())


def status_of(engine: Engine, request_id: str) -> str | None:
    """A request's status, None when there is no such row (yet)."""
    with engine.connect() as conn:
        return conn.execute(select(requests.c.status)
                            .where(requests.c.id == request_id)).scalar()


def usage_of(engine: Engine, request_id: str) -> tuple[int | None, int | None, float | None]:
    """Tokens in and out over every attempt of a request (what was billed), and when it
    was submitted."""
    with engine.connect() as conn:
        tokens_in, tokens_out, created = conn.execute(
            select(func.sum(attempts.c.tokens_in), func.sum(attempts.c.tokens_out),
                   func.min(requests.c.submitted_at))
            .select_from(requests.outerjoin(attempts, attempts.c.request_id == requests.c.id))
            .where(requests.c.id == request_id)).one()
    return tokens_in, tokens_out, created
