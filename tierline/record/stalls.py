"""The watchdog's reads and writes of the record: requests in flight that stopped moving,
and requests whose deadline passed with no result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection

from tierline.record.db import among, insert_ignore, notify_jobs
from tierline.record.records import drop_kept_answers
from tierline.record.schema import attempts, jobs, requests, results
from tierline.router.live.deferral import expired_reason

IN_FLIGHT = ("accepted", "routed")


@dataclass(frozen=True)
class Stalled:
    """A request in flight that the watchdog sends again."""

    id: str
    lane: str


def stalled(conn: Connection, *, now_s: float, stall_after_s: Mapping[str, float],
            limit: int) -> list[Stalled]:
    """Requests in flight, their deadline ahead, that are due: deferred until a time now
    past (``not_before``), or not moved (routed, deferred, re-enqueued) for longer than their
    lane's ``stall_after_s``. Requests never handed to the broker are the sweeper's."""
    moved_at = func.coalesce(requests.c.touched_at, requests.c.enqueued_at,
                             requests.c.submitted_at)
    quiet = or_(*(and_(requests.c.lane == lane, moved_at < now_s - after_s)
                  for lane, after_s in stall_after_s.items()))
    due = or_(and_(requests.c.not_before.is_not(None), requests.c.not_before <= now_s),
              and_(requests.c.not_before.is_(None), quiet))
    stmt = (select(requests.c.id, requests.c.lane)
            .where(requests.c.status.in_(IN_FLIGHT), requests.c.deadline_at > now_s,
                   requests.c.enqueued_at.is_not(None), due)
            .order_by(requests.c.deadline_at).limit(limit))
    return [Stalled(rid, lane) for rid, lane in conn.execute(stmt)]


def touch(conn: Connection, ids: Sequence[str], now_s: float) -> None:
    """Note that these requests were sent again: their wait, if any, is over."""
    if ids:
        conn.execute(update(requests).where(among(conn, requests.c.id, ids))
                     .values(not_before=None, touched_at=now_s))


def overdue(conn: Connection, *, deadline_before: float, limit: int) -> list[str]:
    """Requests in flight whose deadline passed before ``deadline_before``."""
    stmt = (select(requests.c.id)
            .where(requests.c.status.in_(IN_FLIGHT), requests.c.deadline_at < deadline_before)
            .order_by(requests.c.deadline_at).limit(limit))
    return [rid for (rid,) in conn.execute(stmt)]


def expire(conn: Connection, ids: Sequence[str], now_s: float) -> dict[str, str | None]:
    """End these requests ``expired``, saying when their deadline passed; what they paid
    stays their spend (the result counts their attempts). Returns their jobs by request."""
    if not ids:
        return {}
    rows = {row.id: row for row in conn.execute(
        select(requests.c.id, requests.c.job_id, requests.c.submitted_at,
               requests.c.deadline_at).where(among(conn, requests.c.id, ids),
                                             requests.c.status.in_(IN_FLIGHT)))}
    paid = {rid: (n, usd) for rid, n, usd in conn.execute(
        select(attempts.c.request_id, func.count(), func.sum(attempts.c.usd))
        .where(among(conn, attempts.c.request_id, list(rows))).group_by(attempts.c.request_id))}
    insert_ignore(conn, results, [{
        "request_id": rid, "status": "expired", "model": None, "content": None,
        "error": expired_reason(row.deadline_at), "attempts": paid.get(rid, (0, 0))[0],
        "usd": paid.get(rid, (0, 0))[1], "finished_at": now_s,
        "latency_s": now_s - row.submitted_at} for rid, row in rows.items()])
    conn.execute(update(requests).where(among(conn, requests.c.id, list(rows)),
                                        requests.c.status.in_(IN_FLIGHT))
                 .values(status="expired"))
    drop_kept_answers(conn, list(rows))
    jobs_by_request = {rid: row.job_id for rid, row in rows.items()}
    notify_jobs(conn, jobs_by_request.values())
    return jobs_by_request


def open_jobs(conn: Connection, *, limit: int) -> list[str]:
    """Jobs still ``in_progress``: the watchdog settles them (two bundles that end a job's
    last requests at the same time each see the other's as unfinished, and neither
    completes the job)."""
    stmt = (select(jobs.c.id).where(jobs.c.status == "in_progress")
            .order_by(jobs.c.created_at).limit(limit))
    return [job_id for (job_id,) in conn.execute(stmt)]
