"""Thin Celery tasks: load by id, call the core, do the one I/O, record. Safe to run twice.

A task that meets a transient fault (the database or the broker away, see
tierline.workers.transient) is retried with backoff for as long as it takes, never acknowledged and
dropped: Celery publishes the retry before the original message is acknowledged, and the
work is idempotent, so the worst case is a message delivered twice. The retry's countdown
stays inside the broker's visibility timeout (tierline.config.lease).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Reject, Retry

from tierline.record import records
from tierline.workers import routing
from tierline.workers.app import SHADOW_QUEUE, app, tier_queue
from tierline.workers.engine import execute, shadow
from tierline.workers.runtime import Runtime, runtime
from tierline.workers.transient import TRANSIENT_ERRORS, transient

log = logging.getLogger(__name__)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 20.0  # below the lease's share for countdowns at the default 60 s timeout
T = TypeVar("T")


def retry_countdown_s(retries: int, max_countdown_s: float,
                      rng: random.Random | None = None) -> float:
    """The wait before retry ``retries + 1``: doubling from 1 s, capped, with jitter (so a
    fleet of tasks that met the same outage does not come back in one wave)."""
    ceiling_s = min(RETRY_MAX_S, max_countdown_s, RETRY_FIRST_S * 2 ** min(retries, 10))
    return (rng or random).uniform(0.5 * ceiling_s, ceiling_s)


def through_faults(task: Task, work: Callable[[], T]) -> T:
    """Run ``work``; on a transient fault, retry the task and let the original message be
    acknowledged only once the retry is published. If even the retry cannot be published,
    the message is given back. The task must be declared with ``max_retries=None`` (no
    limit: the work's own deadlines end it); ``retry(max_retries=None)`` would mean Celery's
    default of 3, after which the fault would be raised again."""
    try:
        return work()
    except TRANSIENT_ERRORS as error:
        if not transient(error):
            raise
        countdown = retry_countdown_s(task.request.retries,
                                      runtime().settings.lease.max_countdown_s)
        log.warning("%s met %s: %s; retried in %.1f s", task.name, type(error).__name__,
                    error, countdown)
        try:
            raise task.retry(exc=error, countdown=countdown)
        except Retry:
            raise
        except Exception as publish_error:  # the broker is away too
            raise Reject(publish_error, requeue=True) from error


def _publish(request_ids: list[str], tier: str, lane: str, resumed: bool) -> None:
    call_models.apply_async(args=[request_ids], kwargs={"resumed": resumed},
                            queue=tier_queue(tier, lane))


@app.task(name="tierline.route_requests", bind=True, max_retries=None)
def route_requests(self: Task, request_ids: list[str]) -> int:
    """Classify a chunk of accepted requests and publish one message per bundle."""
    return through_faults(self, lambda: routing.route(runtime(), request_ids, _publish))


@app.task(name="tierline.call_models", bind=True, max_retries=None)
def call_models(self: Task, request_ids: list[str], resumed: bool = False) -> int:
    """Answer one bundle; requests waiting (for token budget, a rate limit's window, a model
    to come back) come back after a countdown, or, for a wait longer than a countdown may
    take, are left to the watchdog (``resumed``: some may have paid calls recorded already,
    after a deferral, a resume, a sweep, a retry or a redelivery)."""
    delivery = self.request.delivery_info or {}
    # Redelivered (its worker died before the ack) or retried after a fault: it may have
    # committed paid calls already.
    resumed = resumed or bool(delivery.get("redelivered")) or self.request.retries > 0
    return through_faults(self, lambda: answer_bundle(runtime(), request_ids, resumed=resumed,
                                                       queue=delivery.get("routing_key")))


def answer_bundle(rt: Runtime, request_ids: list[str], *, resumed: bool, queue: Any) -> int:
    """The tier worker's work on one bundle (also run in a gateway's process, see
    tierline.workers.engine.inline): answer it, and send what must wait back to ``queue`` after
    a countdown,
    or leave it to the watchdog when the wait is longer than a countdown may take."""
    outcome = execute.execute(rt, request_ids, resumed=resumed)
    if outcome.shadow:
        send_shadow(outcome.shadow)
    if outcome.deferred:
        wait_s = min(outcome.retry_after_s, rt.policy.failure.max_defer_s)
        lease = rt.settings.lease
        now_s = time.time()
        # The embedded in-memory broker has no visibility timeout (and no beat to run the
        # watchdog): there a countdown may be as long as it likes.
        if wait_s <= lease.max_countdown_s or rt.settings.embedded:
            with rt.engine.begin() as conn:
                records.defer(conn, outcome.deferred, not_before=None, now_s=now_s)
            call_models.apply_async(args=[outcome.deferred], kwargs={"resumed": True},
                                    countdown=wait_s, queue=queue)
        else:
            # An ETA message is held unacknowledged by the worker that takes it, so one that
            # waits longer than the visibility timeout would be delivered twice: the wait is
            # kept on the requests instead, and the watchdog sends them when it is over.
            with rt.engine.begin() as conn:
                records.defer(conn, outcome.deferred, not_before=now_s + wait_s, now_s=now_s)
    return outcome.finished


@app.task(name="tierline.shadow_calls")
def shadow_calls(request_ids: list[str]) -> int:
    """Shadow answered requests (tierline.workers.engine.shadow.run): their calls in a task
    of their own, so they never hold a slot the bundles behind them wait for. Shadowing is
    optional: a fault costs the sample (logged there), so nothing here is retried."""
    return shadow.run(runtime(), request_ids)


def send_shadow(request_ids: list[str]) -> None:
    """Hand answered requests to the shadow queue; shadowing is optional, so a broker that
    cannot take the message costs the sample, never the bundle."""
    try:
        shadow_calls.apply_async(args=[request_ids], queue=SHADOW_QUEUE, retry=False)
    except Exception:  # noqa: BLE001 -- the answers are recorded; grading them is optional
        log.warning("%d requests not shadowed: the shadow queue cannot be reached",
                    len(request_ids), exc_info=True)
