"""The Celery application: queues per lane and tier, at-least-once delivery settings.

Configuration is read when Celery first needs it, not at import, so the same module
serves a Redis deployment and the embedded in-memory default.

Queues: ``ingress.<lane>`` feed the router worker; ``tier.<tier>.<lane>`` feed tier
workers. Priority on Redis is separate queues and dedicated workers, not message priority:
give the realtime queues their own worker so a batch flood never delays them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init

from tierline.config.settings import settings_in_force
from tierline.router.live.deferral import REALTIME
from tierline.router.policy import LANES, Policy

app = Celery("tierline", include=["tierline.workers.tasks", "tierline.producer.batch_tasks"])


def _config() -> dict[str, Any]:
    settings = settings_in_force()
    # Redis redelivers an unacknowledged message (its worker died) after this long: a killed
    # worker's bundle comes back within about a minute. Every call, round, write and
    # countdown of a task is sized to fit inside it (tierline.config.lease).
    visibility_s = settings.visibility_s
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # the record is Postgres, not a result backend
        "task_acks_late": True,  # a worker that dies mid-task gets its message redelivered
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "ingress.standard",
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "broker_transport_options": {
            "visibility_timeout": visibility_s,
            # Sweep for abandoned messages every few seconds, each sweep a real scan (kombu's
            # default throttle of 10 makes it one scan per 100 s: a killed worker's bundle
            # then came back 104 s after the kill, not 60-70 s).
            "unacked_restore_interval": max(1, min(10, int(visibility_s / 6))),
            "unacked_restore_throttle": 1,
        },
    }
    if settings.broker_keyprefix:  # several deployments (or test runs) share one Redis database
        config["broker_transport_options"]["global_keyprefix"] = settings.broker_keyprefix
    if settings.embedded:
        config["broker_transport_options"] = {"polling_interval": 0.01}
    return config


app.add_defaults(_config)


def use_broker(broker_url: str, transport_options: dict[str, Any] | None = None
               ) -> tuple[str, dict[str, Any]]:
    """Point this process's app at ``broker_url`` (and its transport options, if given);
    returns the broker and options it had, to put back. Celery keeps a connection pool and a
    producer pool per app, made for the broker before, that would go on publishing there:
    both are dropped (Celery offers no public call for it; this is the one place that
    touches them)."""
    before = (app.conf.broker_url, app.conf.broker_transport_options)
    app.conf.broker_url = broker_url
    if transport_options is not None:
        app.conf.broker_transport_options = transport_options
    app._pool = None
    app.amqp._producer_pool = None
    return before


SHADOW_QUEUE = "shadow"  # shadow calls (tierline.workers.tasks.shadow_calls)


def ingress_queue(lane: str) -> str:
    """Where accepted requests of a lane wait for the router."""
    return f"ingress.{lane}"


def tier_queue(tier: str, lane: str) -> str:
    """Where bundles for one tier and lane wait for a tier worker."""
    return f"tier.{tier}.{lane}"


def queues_for(policy: Policy, role: str, lanes: tuple[str, ...] = LANES) -> list[str]:
    """The queues a worker of ``role`` ('router', 'tier', 'shadow' or 'all') consumes. A tier
    worker serving a lane other than realtime also takes shadow calls, so they run wherever
    tiers are served; realtime's own workers never do; a ``shadow`` worker adds room."""
    out = []
    if role in ("router", "all"):
        out += [ingress_queue(lane) for lane in lanes]
    if role in ("tier", "all"):
        out += [tier_queue(tier, lane) for lane in lanes for tier in policy.tier_names]
    if role == "shadow" or (role in ("tier", "all") and set(lanes) - {REALTIME}):
        out.append(SHADOW_QUEUE)
    return out


def all_queues(policy: Policy) -> list[str]:
    """Every ingress and tier queue of ``policy``: what Flower and the metrics list."""
    return queues_for(policy, "all")


from tierline.workers import task_labels  # noqa: E402,F401  (names bundle messages for Flower)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """A worker with ``$TIERLINE_METRICS_PORT`` serves its processes' metrics there."""
    from tierline.metrics import serve_from_worker

    serve_from_worker(settings_in_force())
