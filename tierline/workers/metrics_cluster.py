"""The cluster's gauges, read from Redis at each scrape: what no one process counts.

Queue depth per ingress and tier queue (``LLEN``, summed over kombu's priority keys, under
the broker's ``global_keyprefix``, as Flower reads it), today's absorber use and budget per
model, and each model's breaker (open or closed, consecutive failures). ``tierline
metrics`` serves them (``tierline.workers.metrics_exporter``); a Redis that does not answer leaves
the depths out of that scrape, with a warning, instead of failing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)


class ClusterCollector:
    """What no one process counts, read from Redis at each scrape: queue depths, absorber
    use per model, breaker state per model."""

    # kombu's Redis transport keeps a queue's priority levels in keys of their own
    _PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

    def __init__(self, client: Any, queues: Callable[[], list[str]], policy: Any,
                 clock: Callable[[], float] = time.time, key_prefix: str = "",
                 absorber_prefix: str = "tierline:absorber") -> None:
        self._client = client
        self._absorber_prefix = absorber_prefix
        self._queues = queues
        self._key_prefix = key_prefix  # the broker's global_keyprefix, if it has one
        self._policy = policy
        self._clock = clock

    def ping(self) -> bool:
        """Whether Redis answers (raises when it does not)."""
        return bool(self._client.ping())

    def collect(self) -> Iterator[Metric]:
        yield self._depths()
        yield from self._absorber()
        yield from self._breakers()

    def _depths(self) -> Metric:
        depth = GaugeMetricFamily("tierline_queue_depth",
                                  "Messages waiting in a queue (Redis LLEN)", labels=["queue"])
        names = self._queues()
        try:
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                for suffix in self._PRIORITY_SUFFIXES:
                    pipe.llen(self._key_prefix + name + suffix)
            lengths = iter(pipe.execute())
        except Exception:
            log.warning("cannot read queue depths from Redis", exc_info=True)
            return depth
        for name in names:
            depth.add_metric([name], sum(next(lengths) for _ in self._PRIORITY_SUFFIXES))
        return depth

    def _absorber(self) -> Iterator[Metric]:
        from tierline.router.live.absorber_types import Limits, scope_key
        from tierline.workers.stores.absorber_redis import RedisAbsorberStore

        used = GaugeMetricFamily("tierline_absorber_tokens_today",
                                 "Tokens settled and held today per model", labels=["model"])
        limit = GaugeMetricFamily("tierline_absorber_tokens_per_day",
                                  "The model's daily token budget", labels=["model"])
        store = RedisAbsorberStore(self._client, self._absorber_prefix)
        for name, spec in self._policy.models.items():
            limits = Limits.from_model_limits(spec.limits)
            try:
                usage = store.usage(scope_key(name), limits, now_s=self._clock())
            except Exception:
                log.warning("cannot read the absorber of %s", name, exc_info=True)
                continue
            used.add_metric([name], usage["settled_tokens"] + usage["held_tokens"])
            if limits.tokens_per_day is not None:
                limit.add_metric([name], limits.tokens_per_day)
        yield used
        yield limit

    def _breakers(self) -> Iterator[Metric]:
        from tierline.workers.engine.health import RedisHealthStore

        state = GaugeMetricFamily("tierline_breaker_open",
                                  "1 while a model's breaker is open", labels=["model"])
        fails = GaugeMetricFamily("tierline_breaker_failures",
                                  "A model's consecutive failures", labels=["model"])
        now_s = self._clock()
        seen = RedisHealthStore(self._client).read(self._policy.models)
        for name in self._policy.models:
            health = seen.get(name)
            open_until = health.breaker.open_until if health else 0.0
            state.add_metric([name], 1.0 if open_until > now_s else 0.0)
            fails.add_metric([name], health.breaker.fails if health else 0)
        yield state
        yield fails


_cluster: list[ClusterCollector] = []


def cluster_collector() -> ClusterCollector:
    """The collector of this process's configured Redis and policy (built once)."""
    if not _cluster:
        import redis

        from tierline.workers.app import all_queues, app
        from tierline.workers.runtime import runtime

        rt = runtime()
        if rt.settings.redis_url is None:
            from tierline.router.errors import InvalidInput

            raise InvalidInput("metrics: queue depths are read from Redis: set "
                               "TIERLINE_BROKER_URL=redis://...")
        client = redis.Redis.from_url(rt.settings.redis_url, socket_timeout=5,
                                      socket_connect_timeout=2)
        prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
        _cluster.append(ClusterCollector(client, lambda: all_queues(rt.policy), rt.policy,
                                         key_prefix=prefix))
    return _cluster[0]
