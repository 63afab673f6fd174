"""The watchdog: every request ends answered, failed with a reason, or expired at its
deadline, never stuck, with nobody typing a command.

Beat runs it every :data:`WATCH_EVERY_S`. Each pass:

1. *Expires* requests in flight whose deadline passed more than one broker visibility
   timeout ago (a live task never holds its message longer, so none is still working on
   them): their result reads ``Expired: deadline passed at …``, and what they paid stays
   their spend. Their jobs are settled.
2. *Re-enqueues* requests in flight, deadline ahead, that are due: deferred until a time now
   past (a wait longer than a countdown may take, see tierline.config.lease), or not moved for
   longer than their lane allows (:func:`stall_after_s`). They go to the router again,
   which keeps their stored decision and sends them on as resumed bundles, so a request
   sent twice is answered and charged once. Each is marked as moved, so the next pass does
   not send it again.

It also completes jobs with nothing left to answer that no bundle completed: two bundles
that end a job's last requests at the same moment each see the other's as unfinished.

Before all that, calls written ahead (tierline.record.ahead) by a task that is gone and never
recorded
are put in the ledger as attempts of unknown outcome, charged at their reserved estimate.

What it recovers from: a message lost with a Redis restart, a task dropped by a fault
nothing retried, a deferral whose countdown message was lost. Requests accepted but never
handed to the broker are the sweeper's (tierline.schedules.sweeper).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from tierline.record import ahead, jobs, stalls
from tierline.router.policy import Policy
from tierline.workers.app import ingress_queue
from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)

WATCH_EVERY_S = 15.0
MAX_PER_PASS = 10_000
MAX_JOBS_PER_PASS = 1_000


@dataclass(frozen=True)
class Pass:
    """What one pass did."""

    expired: int
    resent: int
    unknown: int = 0  # calls of unknown outcome put in the ledger


def stall_after_s(policy: Policy, lane: str, visibility_s: float) -> float:
    """How long a request of ``lane`` may go without moving before it is sent again: a
    quarter of the lane's budget, at most ``failure.stall_after_s``, and never less than two
    visibility timeouts (a live task, or one waiting to be redelivered, is not stalled)."""
    budget_s = next(spec.latency_budget_s for name, spec in policy.lanes.items() if name == lane)
    return max(2 * visibility_s, min(budget_s / 4, policy.failure.stall_after_s))


def watch(rt: Runtime, *, now_s: float | None = None, limit: int = MAX_PER_PASS) -> Pass:
    """One pass: expire the overdue, re-enqueue the stalled and the due."""
    from tierline.workers.tasks import route_requests

    now_s = time.time() if now_s is None else now_s
    visibility_s = rt.settings.visibility_s
    with rt.engine.begin() as conn:
        # Calls whose task is gone (older than a lease) and never recorded: unknown outcome,
        # charged at their reserved estimate. First, so that the expired count them.
        unknown = ahead.fold(conn, started_before=now_s - visibility_s)
        late = stalls.overdue(conn, deadline_before=now_s - visibility_s, limit=limit)
        ended = stalls.expire(conn, late, now_s)
        jobs.settle(conn, {j for j in ended.values() if j}, now_s)
    with rt.engine.begin() as conn:  # jobs with nothing left that no bundle completed
        jobs.settle(conn, stalls.open_jobs(conn, limit=MAX_JOBS_PER_PASS), now_s)
    if unknown:
        log.warning("watchdog: %d calls of unknown outcome charged at their reserved estimate",
                    unknown)
    if ended:
        log.warning("watchdog: %d requests expired at their deadline", len(ended))
    after: dict[str, float] = {lane: stall_after_s(rt.policy, lane, visibility_s)
                               for lane in rt.policy.lanes}
    with rt.engine.connect() as conn:
        due = stalls.stalled(conn, now_s=now_s, stall_after_s=after, limit=limit)
    by_lane: dict[str, list[str]] = defaultdict(list)
    for s in due:
        by_lane[s.lane].append(s.id)
    chunk = rt.policy.bundling.ingress_chunk
    for lane, ids in by_lane.items():
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            route_requests.apply_async(args=[part], queue=ingress_queue(lane))
            with rt.engine.begin() as conn:
                stalls.touch(conn, part, now_s)
    if due:
        log.warning("watchdog: %d requests re-enqueued (due after a wait, or stalled)", len(due))
    return Pass(len(ended), len(due), unknown)
