"""What a worker process holds: settings, the frozen policy, the database engine, the
estimator, the stores and the providers — built once per process, on first use.

The stores (absorber, relay, health) and the clock are constructor arguments: each is built
from the settings on first use unless one is given (tests give in-memory stores, or share
one registry between two runtimes)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tierline.config.settings import Settings, settings_in_force
from tierline.record.db import engine_for
from tierline.router.live.decide import Estimator, make_estimator
from tierline.router.policy import Policy, load_policy
from tierline.workers.engine.health import HealthStore, MemoryHealthStore, RedisHealthStore
from tierline.workers.engine.relay import MemoryRelay, RedisRelay, Relay
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore
from tierline.workers.stores.absorber_redis import RedisAbsorberStore
from tierline.workers.stores.absorber_store import AbsorberStore

Clock = Callable[[], float]  # seconds since the epoch


class Runtime:
    """Per-process state of a tierline worker or producer.

    ``env`` is where the variables the policy names (API keys, endpoints) are looked up:
    by default the environment the settings were read from.
    """

    def __init__(self, settings: Settings, policy: Policy, env: Mapping[str, str] | None = None,
                 *, absorber: AbsorberStore | None = None, relay: Relay | None = None,
                 health: HealthStore | None = None, clock: Clock = time.time) -> None:
        self.settings = settings
        self.policy = policy
        self.env: Mapping[str, str] = settings.env if env is None else env
        self.clock = clock
        self._absorber = absorber
        self._relay = relay
        self._health = health

    @cached_property
    def engine(self) -> Engine:
        return engine_for(self.settings.database_url)

    def on_engine(self, engine: Engine) -> Runtime:
        """This runtime's settings, policy and stores (the same absorber, relay and health
        registry), writing to the record through ``engine``: a gateway answering calls itself
        uses its own pool, which keeps more connections and pings none before use. What is
        built on first use (providers, on the process's one HTTP client; a learned bundle) is
        built once more for it."""
        other = Runtime(self.settings, self.policy, self.env, absorber=self.absorber,
                        relay=self.relay, health=self.health, clock=self.clock)
        other.__dict__["engine"] = engine  # the cached property's slot
        return other

    @cached_property
    def estimator(self) -> Estimator:
        return make_estimator(self.policy)

    @property
    def absorber(self) -> AbsorberStore:
        """The token-budget store shared by every worker: Redis, or memory when embedded."""
        if self._absorber is None:
            redis = self._redis()
            self._absorber = MemoryAbsorberStore() if redis is None else RedisAbsorberStore(redis)
        return self._absorber

    @property
    def relay(self) -> Relay:
        """Where streamed answers' pieces go: Redis beside the absorber, or memory when
        embedded."""
        if self._relay is None:
            redis = self._redis()
            self._relay = MemoryRelay() if redis is None else RedisRelay(redis)
        return self._relay

    @property
    def health(self) -> HealthStore:
        """Models' latency and failures, learned from every worker's calls: Redis beside the
        absorber, or memory when embedded."""
        if self._health is None:
            redis = self._redis()
            self._health = MemoryHealthStore() if redis is None else RedisHealthStore(redis)
        return self._health

    def _redis(self) -> Any:
        """A new client on the settings' Redis (one per store, as before), or None when
        embedded."""
        if self.settings.redis_url is None:
            return None
        import redis

        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=5,
                                    socket_connect_timeout=2)

    @cached_property
    def spend(self) -> Any:
        """The cost guard's window of recent spend, read from the record (record/spend.py)."""
        from tierline.record.spend import SpendWindow

        return SpendWindow(self.engine)

    @property
    def learned(self) -> tuple[Any, Any]:
        """The trained bundle and step machine the tier worker steps with: the policy's, or
        with ``learning.route_with: promoted`` the record's promoted bundle
        (tierline.workers.promoted)."""
        learning = self.policy.learning
        if learning is None or learning.route_with != "promoted":
            return self.policy_learned
        return self.promoted.current(self.engine, self.policy, self.clock())

    @cached_property
    def promoted(self) -> Any:
        """The promoted bundle, re-read from the record at most once a minute."""
        from tierline.workers.promoted import Promoted

        return Promoted(lambda: self.policy_learned)

    @cached_property
    def policy_learned(self) -> tuple[Any, Any]:
        """The policy's trained bundle and the step machine built from it (see
        tierline.router.strategies.learned);
        for kind ``agreement``, stand-ins for the bundle and the untrained step machine."""
        from tierline.router.learned.bundle import load_bundle
        from tierline.router.strategies.learned import live_strategy, untrained_strategy

        if self.policy.strategy.kind == "agreement":  # the zero-training default
            return untrained_strategy(self.policy)
        path = Path(str(self.policy.strategy.options["bundle"]))
        if not path.is_absolute():  # relative to the policy file, like every path in it
            path = self.settings.policy_path.parent / path
        bundle = load_bundle(path, list(self.policy.models))
        return bundle, live_strategy(self.policy, bundle)

    @cached_property
    def providers(self) -> dict[str, Any]:
        """One provider per policy model, all sharing the process's HTTP client."""
        from tierline.workers.providers import provider_for, shared_client

        client = shared_client()
        return {name: provider_for(spec, client=client, env=self.env, model_key=name)
                for name, spec in self.policy.models.items()}


_current: dict[int, Runtime] = {}
_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built on first use from the process's settings (the command
    line's, else the environment's: ``tierline.config.settings.settings_in_force``)."""
    with _lock:
        pid = os.getpid()
        if pid not in _current:
            settings = settings_in_force()
            _current[pid] = Runtime(settings, load_policy(settings.policy_path))
        return _current[pid]


def install(rt: Runtime | None) -> Runtime | None:
    """Use ``rt`` as this process's runtime (the embedded default and tests do); None goes
    back to building it from the environment. Returns the runtime it replaces."""
    with _lock:
        pid = os.getpid()
        previous = _current.pop(pid, None)
        if rt is not None:
            _current[pid] = rt
        return previous
