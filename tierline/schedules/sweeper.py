"""The sweeper: accepted requests that never reached the broker are enqueued again, and jobs
whose intake was interrupted are ended.

A producer writes each request to the database before it publishes it, so a broker
outage between the two leaves requests accepted but stranded. Routing is idempotent,
so enqueueing a request twice is harmless; the age threshold only avoids racing a
producer that is about to publish.

A producer that dies while it streams a job's input in (a crash, a killed nightly task)
leaves the job ``validating`` for ever: only the end of intake moves it on. The sweeper
ends such a job ``failed`` once no request of it has been written for ``stalled_after_s``
(see ``tierline.record.jobs.fail_intake`` for why ``failed``). The timeout must be longer than
any pause a live producer's input may take between two chunks of requests.

A batch's intake is different: its input file is kept and reading it twice writes each
line once, so a batch still ``validating`` whose intake task never reached the broker, or
has been quiet as long, has its intake handed to the broker again instead.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from tierline.record import jobs, records
from tierline.workers.app import ingress_queue
from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)

INTAKE_STALLED_AFTER_S = 900.0


def intake_error(written: int, stalled_after_s: float) -> str:
    """The error a job whose intake was interrupted ends with: what happened, what to do."""
    return (f"intake interrupted: {written} requests were written, none in the last "
            f"{stalled_after_s:.0f} s, so the input may be incomplete. Submit it again as a new "
            "job; `tierline resume` cannot help, it only re-enqueues requests already written")


def fail_stalled_intakes(rt: Runtime, *, stalled_after_s: float = INTAKE_STALLED_AFTER_S,
                         now_s: float | None = None) -> list[str]:
    """End as ``failed`` the jobs still ``validating`` with no request written for
    ``stalled_after_s``; returns their ids."""
    now_s = time.time() if now_s is None else now_s
    with rt.engine.connect() as conn:
        stalled = jobs.stalled_intakes(conn, now_s - stalled_after_s)
    failed = []
    for job_id, written in stalled:
        with rt.engine.begin() as conn:  # one job per transaction: a big one holds no others
            if jobs.fail_intake(conn, job_id, now_s, intake_error(written, stalled_after_s)):
                failed.append(job_id)
                log.warning("job %s failed: intake interrupted after %d requests", job_id,
                            written)
    return failed


def restart_batch_intakes(rt: Runtime, *, min_age_s: float = 30.0,
                          stalled_after_s: float = INTAKE_STALLED_AFTER_S,
                          now_s: float | None = None) -> list[str]:
    """Hand to the broker again the intakes of batches still ``validating`` that never
    reached it (older than ``min_age_s``) or have been quiet for ``stalled_after_s``; returns
    their job ids."""
    from tierline.producer.batch_intake import publish

    now_s = time.time() if now_s is None else now_s
    with rt.engine.connect() as conn:
        unread = jobs.unread_batches(conn, created_before=now_s - min_age_s,
                                     quiet_since=now_s - stalled_after_s)
    restarted = [job_id for job_id in unread if publish(rt.engine, job_id)]
    for job_id in restarted:
        log.warning("batch %s: still validating; its intake was handed to the broker again",
                    job_id)
    return restarted


def enqueue_stranded(rt: Runtime, *, min_age_s: float = 30.0, limit: int = 10_000,
                     stalled_after_s: float = INTAKE_STALLED_AFTER_S) -> int:
    """One sweep: fail interrupted intakes and restart batches' ones, then publish stranded
    requests older than ``min_age_s``; returns how many requests were published."""
    from tierline.workers.tasks import route_requests

    # First, so that the requests of a job that just failed are not published for nothing.
    fail_stalled_intakes(rt, stalled_after_s=stalled_after_s)
    restart_batch_intakes(rt, min_age_s=min_age_s, stalled_after_s=stalled_after_s)
    cutoff = time.time() - min_age_s
    with rt.engine.connect() as conn:
        stranded = records.unenqueued(conn, limit=limit, submitted_before=cutoff)
    by_lane: dict[str, list[str]] = defaultdict(list)
    for rid, lane in stranded:
        by_lane[lane].append(rid)
    chunk = rt.policy.bundling.ingress_chunk
    for lane, ids in by_lane.items():
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            route_requests.apply_async(args=[part], queue=ingress_queue(lane))
            with rt.engine.begin() as conn:
                records.mark_enqueued(conn, part, time.time())
    return len(stranded)
