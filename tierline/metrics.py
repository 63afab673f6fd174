"""Prometheus metrics: what every process counts, and what a scrape reads from Redis.

Counted where it is written (``tierline.record.records`` for requests, attempts and results,
``tierline.record.jobs`` for requests a job ends, ``tierline.workers.stores.absorber_redis`` for
budget decisions):
requests accepted by lane; requests finished by lane, tier and status; attempts by model
and outcome; tokens and USD by model and tenant; absorber decisions (granted, deferred,
refused) by model; call latency and end-to-end latency histograms by lane.

Read at scrape time by ``tierline.workers.metrics_cluster`` (served once, by ``tierline metrics``):
queue depth per ingress and tier queue (Redis ``LLEN``, as Flower reads it), today's
absorber use and limit per model, and each model's breaker (open or closed, failures).

Prefork workers count in child processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (before
this module is imported) every process writes its counters to files there and the
serving process adds them up (``prometheus_client``'s multiprocess mode). A worker serves
its own at ``$TIERLINE_METRICS_PORT`` when that is set; the gateway mounts
:func:`metrics_app`. Counters count what was written, so a transaction rolled back and
retried is counted twice: the ledger, not this, is the money record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tierline.config.settings import Settings

log = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # e.g. on a fresh tmpfs: the first count needs it
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
_CLASS = re.compile(r"([A-Z][A-Za-z0-9_]*):")

ACCEPTED = Counter("tierline_requests_accepted", "Requests accepted into the record",
                   ["lane"])
FINISHED = Counter("tierline_requests_finished", "Requests that got their result",
                   ["lane", "tier", "status"])
ATTEMPTS = Counter("tierline_attempts", "Model call attempts by outcome (ok or error class)",
                   ["model", "outcome"])
TOKENS = Counter("tierline_tokens", "Tokens charged", ["model", "tenant", "direction"])
USD = Counter("tierline_usd", "US dollars charged", ["model", "tenant"])
ABSORBER = Counter("tierline_absorber_reservations",
                   "Token-budget reservations by decision (granted, deferred, refused)",
                   ["model", "decision"])
GUARD = Counter("tierline_guard_decisions",
                "Decisions made while the cost guard was on, by what it did (shift: one tier "
                "cheaper; cap: a step machine capped one tier below the top; none)",
                ["action"])
CALL_LATENCY = Histogram("tierline_call_latency_seconds", "One model call, start to end",
                         ["lane"], buckets=LATENCY_BUCKETS_S)
REQUEST_LATENCY = Histogram("tierline_request_latency_seconds",
                            "A request, submitted to result", ["lane"],
                            buckets=LATENCY_BUCKETS_S)


def outcome_of(ok: bool, error: str | None) -> str:
    """``ok``, or the leading exception class name of the error (``TooSlow``, ...)."""
    if ok:
        return "ok"
    match = _CLASS.match(error or "")
    return match.group(1) if match else "error"


def accepted(offered: Sequence[Any], new_ids: Sequence[str]) -> None:
    """Count the requests of ``offered`` whose ids are in ``new_ids`` (newly accepted)."""
    new = set(new_ids)
    for request in offered:
        if request.id in new:
            ACCEPTED.labels(request.lane).inc()


def outcomes(made: Sequence[Any], done: Sequence[Any], usd_of: Mapping[str, Any],
             context: Mapping[str, Any]) -> None:
    """Count a bundle's attempts (``AttemptRow``; ``usd_of`` by attempt id) and results
    (``ResultRow``); ``context`` holds each request by id."""
    # Summed per label set first: one ``labels().inc()`` per distinct set, not per request
    # (each costs a lock and, in multiprocess mode, a write to a mapped file).
    attempts: dict[tuple[str, str], int] = defaultdict(int)
    tokens: dict[tuple[str, str, str], int] = defaultdict(int)
    usd: dict[tuple[str, str], float] = defaultdict(float)
    calls_s: dict[str, list[float]] = defaultdict(list)
    tier_of: dict[str, str] = {}
    for a in made:
        request = context.get(a.request_id)
        lane = getattr(request, "lane", "unknown")
        tenant = getattr(request, "tenant", "unknown")
        attempts[a.model, outcome_of(a.ok, a.error)] += 1
        calls_s[lane].append(max(0.0, a.latency_s))
        if a.tokens_in or a.tokens_out:
            tokens[a.model, tenant, "in"] += a.tokens_in
            tokens[a.model, tenant, "out"] += a.tokens_out
            usd[a.model, tenant] += float(usd_of.get(a.id, 0))
        if a.ok or a.request_id not in tier_of:
            tier_of[a.request_id] = a.tier
    finished: dict[tuple[str, str, str], int] = defaultdict(int)
    requests_s: dict[str, list[float]] = defaultdict(list)
    for r in done:
        request = context.get(r.request_id)
        lane = getattr(request, "lane", "unknown")
        finished[lane, tier_of.get(r.request_id, "none"), r.status] += 1
        submitted_at = getattr(request, "submitted_at", None)
        if submitted_at is not None:
            requests_s[lane].append(max(0.0, r.finished_at - submitted_at))
    for counter, sums in ((ATTEMPTS, attempts), (TOKENS, tokens), (USD, usd),
                          (FINISHED, finished)):
        for labels, amount in sums.items():
            counter.labels(*labels).inc(amount)
    for histogram, seconds in ((CALL_LATENCY, calls_s), (REQUEST_LATENCY, requests_s)):
        for lane, values in seconds.items():
            child = histogram.labels(lane)
            for value in values:
                child.observe(value)


def halted(status: str, lanes: Sequence[str]) -> None:
    """Count requests ended without an answer by their job (``cancelled``, ``expired``)."""
    counts: dict[str, int] = defaultdict(int)
    for lane in lanes:
        counts[lane] += 1
    for lane, n in counts.items():
        FINISHED.labels(lane, "none", status).inc(n)


def absorber_decision(scope: str, granted: int, deferred: int, refused: int) -> None:
    """Count one reservation round of a limit scope (``model`` or ``model|tenant=...``)."""
    model = scope.split("|", 1)[0]
    for decision, n in (("granted", granted), ("deferred", deferred), ("refused", refused)):
        if n:
            ABSORBER.labels(model, decision).inc(n)


def guard_decisions(actions: Sequence[str]) -> None:
    """Count decisions made while the cost guard was on, by ``shift``, ``cap`` or ``none``."""
    counts: dict[str, int] = defaultdict(int)
    for action in actions:
        counts[action] += 1
    for action, n in counts.items():
        GUARD.labels(action).inc(n)


def process_registry() -> Any:
    """This process's metrics, or, in multiprocess mode, every process's in the folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def registry(extra: Collector | None = None) -> CollectorRegistry:
    """This process's (or the multiprocess folder's) metrics, plus ``extra`` (the cluster's,
    in the exporter)."""
    out = CollectorRegistry(auto_describe=False)
    out.register(process_registry())
    if extra is not None:
        out.register(extra)
    return out


def render(extra: Collector | None = None) -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(registry(extra))


def metrics_app() -> Callable[..., Any]:
    """An ASGI app answering every GET with :func:`render` (the gateway mounts it)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await asyncio.to_thread(render)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def clear_multiprocess_dir() -> None:
    """Drop the files of processes of an earlier run (call once, before the workers start)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink(missing_ok=True)


def serve_from_worker(settings: Settings) -> None:
    """A worker with ``$TIERLINE_METRICS_PORT`` serves its processes' metrics there."""
    port = settings.metrics_port
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("TIERLINE_METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: prefork child "
                    "processes' metrics are not served")
    clear_multiprocess_dir()
    host = settings.metrics_host
    try:
        start_http_server(int(port), addr=host, registry=registry())
    except (ValueError, OSError) as exc:  # metrics only advise: the worker works without
        log.error("TIERLINE_METRICS_PORT=%s: cannot serve metrics on %s (%s); the worker "
                  "runs without", port, host, exc)
        return
    log.info("metrics at http://%s:%s/metrics", host, port)
