"""The sweeper: accepted requests that never reached the broker are enqueued again.

A producer writes each request to the database before it publishes it, so a broker
outage between the two leaves requests accepted but stranded. Routing is idempotent,
so enqueueing a request twice is harmless; the age threshold only avoids racing a
producer that is about to publish.
"""

from __future__ import annotations

import time
from collections import defaultdict

from workers import records
from workers.app import ingress_queue
from workers.runtime import Runtime


def enqueue_stranded(rt: Runtime, *, min_age_s: float = 30.0, limit: int = 10_000) -> int:
    """Publish stranded requests older than ``min_age_s``; returns how many."""
    from workers.tasks import route_requests

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
