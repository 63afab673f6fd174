"""The record of OpenAI-style batches: what a batch adds to its job (input file, metadata,
rejected lines, when its intake started and ended), and the reads the Batch API makes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from tierline.record.schema import attempts, batches, jobs, requests


def add(conn: Connection, job_id: str, *, tenant: str, input_file_id: str,
        metadata: dict[str, Any] | None, now_s: float) -> None:
    """Write a batch beside its job (created in the same transaction)."""
    conn.execute(insert(batches).values(job_id=job_id, tenant=tenant, input_file_id=input_file_id,
                                        metadata=metadata, rejected=[], created_at=now_s))


def find(conn: Connection, tenant: str, job_id: str) -> dict[str, Any] | None:
    """A batch of ``tenant`` (every column), or None."""
    row = conn.execute(select(batches).where(batches.c.job_id == job_id,
                                             batches.c.tenant == tenant)).first()
    return None if row is None else dict(row._mapping)


def page(conn: Connection, tenant: str, *, limit: int,
         after: tuple[str, float] | None) -> list[str]:
    """Job ids of up to ``limit`` batches of ``tenant``, newest first, after the batch
    ``after`` (its job id and creation time; one created in the same instant is kept)."""
    when, ident = batches.c.created_at, batches.c.job_id
    stmt = (select(ident).where(batches.c.tenant == tenant)
            .order_by(when.desc(), ident.desc()).limit(limit))
    if after is not None:
        last, since = after
        stmt = stmt.where(or_(when < since, and_(when == since, ident < last)))
    return [str(job_id) for job_id in conn.execute(stmt).scalars()]


def job_times(conn: Connection, job_id: str) -> Any:
    """A job's ``created_at``, ``finished_at`` and ``expires_at`` (a row)."""
    return conn.execute(select(jobs.c.created_at, jobs.c.finished_at, jobs.c.expires_at)
                        .where(jobs.c.id == job_id)).one()


def to_read(conn: Connection, job_id: str) -> Any | None:
    """What an intake needs of its batch: tenant, input file id, the job's status and
    ``expires_at`` (a row), or None when there is no such batch."""
    return conn.execute(select(batches.c.tenant, batches.c.input_file_id, jobs.c.status,
                               jobs.c.expires_at)
                        .join(jobs, jobs.c.id == batches.c.job_id)
                        .where(batches.c.job_id == job_id)).first()


def mark_enqueued(conn: Connection, job_id: str, now_s: float) -> None:
    """Note that the batch's intake was handed to the broker."""
    conn.execute(update(batches).where(batches.c.job_id == job_id).values(enqueued_at=now_s))


def mark_read(conn: Connection, job_id: str, rejected: list[tuple[int, str | None, str]],
              now_s: float) -> None:
    """Note that the intake has read the whole file, with the lines it rejected."""
    conn.execute(update(batches).where(batches.c.job_id == job_id)
                 .values(rejected=rejected, in_progress_at=now_s))


def job_status(conn: Connection, job_id: str) -> str | None:
    """A job's status, or None when there is no such job."""
    state = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
    return None if state is None else str(state)


def billed(conn: Connection, ids: list[str]) -> dict[str, tuple[float, int | None, int | None]]:
    """When each request was submitted and the tokens of all its attempts."""
    if not ids:
        return {}
    stmt = (select(requests.c.id, requests.c.submitted_at, func.sum(attempts.c.tokens_in),
                   func.sum(attempts.c.tokens_out))
            .select_from(requests.outerjoin(attempts, attempts.c.request_id == requests.c.id))
            .where(requests.c.id.in_(ids)).group_by(requests.c.id, requests.c.submitted_at))
    return {rid: (at, tin, tout) for rid, at, tin, tout in conn.execute(stmt)}
