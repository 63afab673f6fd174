"""The tier worker's work on a bundle: load its requests, end those whose deadline passed,
step the rest through their strategy's machine (tierline.workers.engine.drive: budgets,
calls, fallbacks, deferrals), and record it all.

The attempts, charges and results of the whole bundle are written in one transaction,
retried through a short database outage. Then the streams relayed to waiting clients are
ended, and a sample of the answers is drawn for shadow calls, which the caller sends to
their own task (tierline.workers.engine.shadow).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tierline.config.lease import Lease
from tierline.record import ahead, jobs, records
from tierline.record.records import AttemptRow, OnRecord, ResultRow
from tierline.router.envelope import Request
from tierline.router.live.deferral import expired, expired_reason
from tierline.router.live.output_budget import output_cap_for_band
from tierline.workers.engine import drive, shadow
from tierline.workers.engine.calls import prices_of, relayed
from tierline.workers.engine.relay import end_streams
from tierline.workers.runtime import Runtime
from tierline.workers.transient import TRANSIENT_DB_ERRORS, transient

log = logging.getLogger(__name__)
WRITE_RETRY_FIRST_S = 0.5
WRITE_RETRY_MAX_S = 4.0


@dataclass
class BundleReport:
    """What a bundle came to: how many requests ended, which wait for budget, and which
    are to be shadowed."""

    finished: int = 0
    deferred: list[str] = field(default_factory=list)
    retry_after_s: float = 0.0
    shadow: list[str] = field(default_factory=list)  # answered, drawn for shadow calls


def execute(rt: Runtime, request_ids: Sequence[str], now: Callable[[], float] = time.time,
            *, resumed: bool = False) -> BundleReport:
    """Answer a bundle of routed requests.

    Safe to run twice: requests that already have a result are skipped, and attempt,
    charge and result rows are keyed so a repeat writes nothing new. A bundle that comes
    back (``resumed``: after a deferral, a resume or a sweep) numbers its new calls after
    the ones already recorded and reuses the answers kept for it; only then is the lookup
    worth its query.
    """
    lease = rt.settings.lease
    began = now()
    if resumed:  # calls its earlier run made and never recorded: unknown outcome, on record
        with rt.engine.begin() as conn:
            ahead.fold(conn, request_ids=request_ids)
    with rt.engine.connect() as conn:
        todo, decided, jobs_by_request = records.load_bundle(conn, request_ids, began)
        earlier = records.on_record(conn, request_ids) if resumed else {}
    caps = rt.policy.strategy.output_caps_by_band
    # A request whose deadline passed while it waited (in a queue, a deferral, an outage)
    # ends expired, saying when; it is not sent to a model with no time left.
    late = [ResultRow(r.id, "expired", None, None, expired_reason(r.deadline_at), began)
            for r in todo if expired(r.deadline_at, began)]
    work = [(replace(r, max_output_tokens=output_cap_for_band(d.band, caps, r.max_output_tokens)),
             d) for r in todo
            if (d := decided.get(r.id)) is not None and not expired(r.deadline_at, began)]
    outcome = BundleReport()
    attempts, results = drive.run(rt, work, earlier, outcome, now, began + lease.rounds_s)
    results = [*late, *results]
    _write(rt, lease, now, attempts, results, {r.id: r for r in todo}, jobs_by_request, earlier)
    streamed = {r.id for r in todo if relayed(rt, r)}
    end_streams(rt.relay, [row.request_id for row in results if row.request_id in streamed])
    outcome.finished = len(results)
    # Answers recorded and streams ended: a sample of them is shadowed, in a task of its own.
    outcome.shadow = shadow.sample(rt, results, {r.id: r for r in todo})
    return outcome


def _write(rt: Runtime, lease: Lease, now: Callable[[], float], attempts: list[AttemptRow],
           results: list[ResultRow], context: dict[str, Request],
           jobs_by_request: dict[str, str | None], earlier: Mapping[str, OnRecord]) -> None:
    """Record the bundle's attempts, charges and results in one transaction, retried through
    a short database outage (the calls are paid: writing them is worth waiting for); past
    the lease's share for writes the error goes up, and the task is retried."""
    gives_up_at = now() + lease.write_s
    wait_s = WRITE_RETRY_FIRST_S
    while True:
        try:
            with rt.engine.begin() as conn:
                records.record_outcomes(conn, attempts, results, prices_of(rt), context,
                                        jobs_by_request, earlier)
                # Also ends jobs whose window closed: their requests were skipped above.
                jobs.settle(conn, {j for j in jobs_by_request.values() if j}, now())
            return
        except TRANSIENT_DB_ERRORS as error:
            if not transient(error) or now() + wait_s > gives_up_at:
                raise
            log.warning("writing a bundle's outcome failed (%s); again in %.1f s",
                        type(error).__name__, wait_s)
            time.sleep(wait_s)
            wait_s = min(2 * wait_s, WRITE_RETRY_MAX_S)
