"""Thin Celery tasks: load by id, call the core, do the one I/O, record. Safe to run twice."""

from __future__ import annotations

from celery import Task

from workers import execute, routing
from workers.app import app, tier_queue
from workers.runtime import runtime


def _publish(request_ids: list[str], tier: str, lane: str, resumed: bool) -> None:
    call_models.apply_async(args=[request_ids], kwargs={"resumed": resumed},
                            queue=tier_queue(tier, lane))


@app.task(name="tierline.route_requests")
def route_requests(request_ids: list[str]) -> int:
    """Classify a chunk of accepted requests and publish one message per bundle."""
    return routing.route(runtime(), request_ids, _publish)


@app.task(name="tierline.call_models", bind=True)
def call_models(self: Task, request_ids: list[str], resumed: bool = False) -> int:
    """Answer one bundle; requests waiting for token budget come back after a countdown
    (``resumed``: some may have paid calls recorded already, after a deferral, a resume, a
    sweep or a redelivery)."""
    rt = runtime()
    delivery = self.request.delivery_info or {}
    # Redelivered (its worker died before the ack): it may have committed paid calls already.
    resumed = resumed or bool(delivery.get("redelivered"))
    outcome = execute.execute(rt, request_ids, resumed=resumed)
    if outcome.deferred:
        # Capped so an ETA message never outlives the broker's visibility timeout; a longer
        # wait is simply re-checked.
        countdown = min(outcome.retry_after_s, rt.policy.failure.max_defer_s)
        queue = delivery.get("routing_key")
        call_models.apply_async(args=[outcome.deferred], kwargs={"resumed": True},
                                countdown=countdown, queue=queue)
    return outcome.finished


@app.task(name="tierline.ingest_batch")
def ingest_batch(job_id: str) -> int:
    """Read a batch's input file into its job (``tierline.batch_intake``): safe to run twice,
    a second run writes only the lines the first did not."""
    from tierline.batch_intake import ingest
    from tierline.client import Client

    return ingest(Client(runtime()), job_id)
