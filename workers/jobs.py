"""Job lifecycle, as in OpenAI's Batch API.

    validating ──▶ in_progress ──▶ completed
        │               ├──▶ cancelled   (``cancel``: unanswered requests end ``cancelled``)
        └──▶ failed     └──▶ expired     (the completion window passed: the rest end ``expired``)

``failed`` is a job none of whose input was valid. Finished results are always kept;
a call already in flight when its job is cancelled is still charged, and its late
answer is recorded as an attempt but does not replace the ``cancelled`` result.
(``cancelling`` and ``finalizing`` exist in OpenAI's API; here both transitions happen
in one transaction, so a reader never observes them.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from workers.db import insert_ignore
from workers.schema import jobs, requests, results

ACTIVE = ("validating", "in_progress")
TERMINAL = ("completed", "failed", "cancelled", "expired")
UNFINISHED = ("accepted", "routed")


def set_state(conn: Connection, job_id: str, state: str, *, now_s: float,
              error: str | None = None) -> None:
    """Move a job to ``state`` (terminal states record when)."""
    values: dict[str, object] = {"status": state}
    if state in TERMINAL:
        values["finished_at"] = now_s
    if error is not None:
        values["error"] = error
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


def halt(conn: Connection, job_id: str, state: str, now_s: float) -> int:
    """End a job's unanswered requests as ``state`` ('cancelled' or 'expired'); the job too."""
    ids = [row[0] for row in conn.execute(
        select(requests.c.id).where(requests.c.job_id == job_id,
                                    requests.c.status.in_(UNFINISHED)))]
    _end_requests(conn, ids, state, now_s)
    set_state(conn, job_id, state, now_s=now_s)
    return len(ids)


def _end_requests(conn: Connection, ids: Sequence[str], state: str, now_s: float) -> None:
    if not ids:
        return
    submitted = dict(conn.execute(select(requests.c.id, requests.c.submitted_at)
                                  .where(requests.c.id.in_(list(ids)))).all())
    insert_ignore(conn, results, [{
        "request_id": rid, "status": state, "model": None, "content": None,
        "error": f"job {state}", "attempts": 0, "usd": 0, "finished_at": now_s,
        "latency_s": now_s - submitted[rid]} for rid in ids])
    conn.execute(update(requests).where(requests.c.id.in_(list(ids)),
                                        requests.c.status.in_(UNFINISHED)).values(status=state))


def halted(conn: Connection, request_ids: Sequence[str], now_s: float) -> set[str]:
    """Which of these requests belong to a job that is over (cancelled, expired, failed)."""
    if not request_ids:
        return set()
    stmt = (select(requests.c.id).join(jobs, jobs.c.id == requests.c.job_id)
            .where(requests.c.id.in_(list(request_ids)),
                   (jobs.c.status.in_(("cancelled", "expired", "failed")))
                   | and_(jobs.c.expires_at.is_not(None), jobs.c.expires_at < now_s)))
    return {row[0] for row in conn.execute(stmt)}


def settle(conn: Connection, job_ids: Iterable[str], now_s: float) -> None:
    """Complete in-progress jobs with nothing left to answer; expire those past their window."""
    for job_id in set(job_ids):
        row = conn.execute(select(jobs.c.status, jobs.c.expires_at)
                           .where(jobs.c.id == job_id)).first()
        if row is None or row.status != "in_progress":
            continue
        if row.expires_at is not None and row.expires_at < now_s:
            halt(conn, job_id, "expired", now_s)
            continue
        # Whether any is left, not how many: counting walks every unfinished row of the
        # job, which for a million-row job is most of the index, once per bundle.
        left = conn.execute(select(requests.c.id).where(
            requests.c.job_id == job_id, requests.c.status.in_(UNFINISHED)).limit(1)).first()
        if left is None:
            set_state(conn, job_id, "completed", now_s=now_s)
