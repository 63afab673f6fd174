"""Job lifecycle, as in OpenAI's Batch API.

    validating ──▶ in_progress ──▶ completed
        │               ├──▶ cancelled   (``cancel``: unanswered requests end ``cancelled``)
        └──▶ failed     └──▶ expired     (the completion window passed: the rest end ``expired``)

``failed`` is a job none of whose input was valid, or whose intake was interrupted (see
``fail_intake``). Finished results are always kept;
a call already in flight when its job is cancelled is still charged, and its late
answer is recorded as an attempt but does not replace the ``cancelled`` result.
(``cancelling`` and ``finalizing`` exist in OpenAI's API; here both transitions happen
in one transaction, so a reader never observes them.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.engine import Connection

from tierline.record import records
from tierline.record.db import JOBS_CHANNEL, among, insert_ignore, notify_jobs
from tierline.record.schema import attempts, batches, jobs, requests, results

ACTIVE = ("validating", "in_progress")
TERMINAL = ("completed", "failed", "cancelled", "expired")
UNFINISHED = ("accepted", "routed")


def set_state(conn: Connection, job_id: str, state: str, *, now_s: float,
              error: str | None = None) -> None:
    """Move a job to ``state`` (terminal states record when and wake the job's waiters); a
    job that has ended stays so.

    An ended job is never reopened: an intake the sweeper declared interrupted that then
    finishes after all must not turn its ``failed`` job back into ``in_progress``.
    """
    values: dict[str, object] = {"status": state}
    if state in TERMINAL:
        values["finished_at"] = now_s
    if error is not None:
        values["error"] = error
    moved = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status.not_in(TERMINAL))
                         .values(**values))
    if state in TERMINAL and moved.rowcount:
        notify_jobs(conn, [job_id])


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
    ended = conn.execute(select(requests.c.id, requests.c.submitted_at, requests.c.lane)
                         .where(requests.c.id.in_(list(ids)))).all()
    submitted = {rid: at for rid, at, _ in ended}
    # What a request deferred mid-climb paid before it was stopped stays its own spend.
    paid = {rid: (n, usd) for rid, n, usd in conn.execute(
        select(attempts.c.request_id, func.count(), func.sum(attempts.c.usd))
        .where(attempts.c.request_id.in_(list(ids))).group_by(attempts.c.request_id))}
    insert_ignore(conn, results, [{
        "request_id": rid, "status": state, "model": None, "content": None,
        "error": f"job {state}", "attempts": paid.get(rid, (0, 0))[0],
        "usd": paid.get(rid, (0, 0))[1], "finished_at": now_s,
        "latency_s": now_s - submitted[rid]} for rid in ids])
    conn.execute(update(requests).where(requests.c.id.in_(list(ids)),
                                        requests.c.status.in_(UNFINISHED)).values(status=state))
    records.drop_kept_answers(conn, ids)  # a request deferred mid-climb will not return
    from tierline import metrics

    metrics.halted(state, [lane for _, _, lane in ended])


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
    """Complete in-progress jobs with nothing left to answer; expire those past their window.

    On Postgres one statement for any number of jobs (it was three: a bundle of realtime
    calls is one job per call, and on a lone call this was a third of the outcome's
    transaction); a job past its window is then halted as before."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return
    if conn.dialect.name == "postgresql":
        for (late,) in conn.exec_driver_sql(_SETTLE, (wanted, now_s, now_s, JOBS_CHANNEL,
                                                      now_s)).all():
            if late is not None:  # None: a row of the notifications
                halt(conn, late, "expired", now_s)
        return
    open_jobs = conn.execute(select(jobs.c.id, jobs.c.expires_at).where(
        among(conn, jobs.c.id, wanted), jobs.c.status == "in_progress")).all()
    live: list[str] = []
    for job_id, expires_at in open_jobs:
        if expires_at is not None and expires_at < now_s:
            halt(conn, job_id, "expired", now_s)
        else:
            live.append(job_id)
    if not live:
        return
    # Whether any is left, not how many: counting walks every unfinished row of the job,
    # which for a million-row job is most of the index, once per bundle.
    left = exists().where(requests.c.job_id == jobs.c.id, requests.c.status.in_(UNFINISHED))
    done = list(conn.execute(update(jobs).where(
        among(conn, jobs.c.id, live), jobs.c.status == "in_progress", ~left)
        .values(status="completed", finished_at=now_s).returning(jobs.c.id)).scalars())
    notify_jobs(conn, done)


# settle's statement on Postgres: the jobs in progress among the ids; those still inside
# their window with no request left unfinished (whether any is left, not how many: counting
# walks every unfinished row of a million-row job) are completed and their waiters woken
# (pg_notify, delivered at commit); returned are those past their window, to be halted.
_SETTLE = f"""
WITH open AS (
    SELECT id, expires_at FROM jobs WHERE id = ANY(%b::text[]) AND status = 'in_progress'),
completed AS (
    UPDATE jobs SET status = 'completed', finished_at = %s FROM open
    WHERE jobs.id = open.id AND jobs.status = 'in_progress'
      AND (open.expires_at IS NULL OR open.expires_at >= %s)
      AND NOT EXISTS (SELECT 1 FROM requests WHERE requests.job_id = jobs.id
                      AND requests.status IN ({", ".join(f"'{s}'" for s in UNFINISHED)}))
    RETURNING jobs.id),
woken AS (SELECT id, pg_notify(%s, id) FROM completed)
SELECT id FROM open WHERE expires_at < %s
UNION ALL SELECT NULL FROM woken
"""


def stalled_intakes(conn: Connection, quiet_since: float) -> list[tuple[str, int]]:
    """(job id, requests written) of jobs still ``validating`` that were opened before
    ``quiet_since`` and have had no request written since.

    A request's ``submitted_at`` is when intake built it, so the newest one is the intake's
    last sign of life. This reads every request of such jobs once; only jobs validating for
    longer than the sweeper's timeout are looked at. A batch's job is not one of them: its
    input is kept, so its intake is started again instead (:func:`unread_batches`).
    """
    newest = func.max(requests.c.submitted_at)
    stmt = (select(jobs.c.id, func.count(requests.c.id), newest)
            .select_from(jobs.outerjoin(requests, requests.c.job_id == jobs.c.id))
            .where(jobs.c.status == "validating", jobs.c.created_at < quiet_since,
                   ~exists().where(batches.c.job_id == jobs.c.id))
            .group_by(jobs.c.id)
            .having((newest.is_(None)) | (newest < quiet_since)))
    return [(job_id, int(written)) for job_id, written, _ in conn.execute(stmt)]


def unread_batches(conn: Connection, *, created_before: float, quiet_since: float
                   ) -> list[str]:
    """Job ids of the batches still ``validating`` whose intake task must be handed to the
    broker again: never handed over (the broker was down) and created before
    ``created_before``, or handed over before ``quiet_since`` with no request written since
    (its message was lost, or its worker died and the broker has not redelivered it yet).

    Their input files are kept, and an intake run twice writes each line once, so starting
    one again is safe, where ending the job (as :func:`fail_intake` does for a producer's
    lost stream) would throw the batch away.
    """
    newest = func.max(requests.c.submitted_at)
    stmt = (select(batches.c.job_id)
            .select_from(batches.join(jobs, jobs.c.id == batches.c.job_id)
                         .outerjoin(requests, requests.c.job_id == batches.c.job_id))
            .where(jobs.c.status == "validating",
                   (batches.c.enqueued_at.is_(None) & (batches.c.created_at < created_before))
                   | (batches.c.enqueued_at < quiet_since))
            .group_by(batches.c.job_id)
            .having(newest.is_(None) | (newest < quiet_since)))
    return list(conn.execute(stmt).scalars())


def fail_intake(conn: Connection, job_id: str, now_s: float, error: str) -> bool:
    """End a ``validating`` job whose intake was interrupted as ``failed``, with ``error``.

    Why ``failed`` and not ``in_progress``: intake writes a job's requests chunk by chunk,
    each chunk in its own transaction, and only after the last chunk records the job's
    counts and moves it to ``in_progress``, in one more transaction. So a job still
    ``validating`` long after its last chunk is one whose producer stopped somewhere in its
    input, and nothing recorded tells how much input there was: the requests written may
    be all of it or a tenth. Moving it on would report a partial job as ``completed``.

    Its unanswered requests end ``failed`` (as ``halt`` ends them), so the job's counts add
    up; finished results are kept. ``Client.resume`` cannot recover it: it re-enqueues a
    job's unanswered requests, and a failed job has none (its workers skip it anyway). The
    input must be submitted again as a new job; there a row that keeps its idempotency key
    gets its earlier request back, answered or failed. Returns False when the job was not
    ``validating`` any more (its intake finished meanwhile): then nothing changes.
    """
    moved = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "validating")
                         .values(status="failed", finished_at=now_s, error=error))
    if moved.rowcount != 1:
        return False
    ids = [row[0] for row in conn.execute(
        select(requests.c.id).where(requests.c.job_id == job_id,
                                    requests.c.status.in_(UNFINISHED)))]
    _end_requests(conn, ids, "failed", now_s)
    notify_jobs(conn, [job_id])
    return True


def header(conn: Connection, job_id: str) -> Any | None:
    """A job's ``name``, ``status`` and ``error`` (a row), or None when there is none."""
    return conn.execute(select(jobs.c.name, jobs.c.status, jobs.c.error)
                        .where(jobs.c.id == job_id)).first()


def named(conn: Connection, name: str) -> str | None:
    """The id of the job called ``name``, if there is one."""
    found = conn.execute(select(jobs.c.id).where(jobs.c.name == name)).first()
    return None if found is None else str(found.id)


def drop(conn: Connection, job_id: str) -> None:
    """Delete a job that holds no requests (a resubmission's empty job)."""
    conn.execute(jobs.delete().where(jobs.c.id == job_id))


def unfinished(conn: Connection, job_id: str) -> list[tuple[str, str]]:
    """The (id, lane) of each of a job's requests that has not ended."""
    return [(str(rid), str(lane)) for rid, lane in conn.execute(
        select(requests.c.id, requests.c.lane).where(
            requests.c.job_id == job_id, requests.c.status.in_(UNFINISHED)))]
