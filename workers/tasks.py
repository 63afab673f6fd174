"""Thin Celery tasks: load by id, call the core, do the one I/O, record. Safe to run twice."""

from __future__ import annotations

from workers import execute, routing
from workers.app import app, tier_queue
from workers.runtime import runtime


def _publish(request_ids: list[str], tier: str, lane: str) -> None:
    call_models.apply_async(args=[request_ids], queue=tier_queue(tier, lane))


@app.task(name="tierline.route_requests")
def route_requests(request_ids: list[str]) -> int:
    """Classify a chunk of accepted requests and publish one message per bundle."""
    return routing.route(runtime(), request_ids, _publish)


@app.task(name="tierline.call_models")
def call_models(request_ids: list[str]) -> int:
    """Answer one bundle: concurrent model calls, fallbacks, and the bundle's records."""
    return execute.execute(runtime(), request_ids)
