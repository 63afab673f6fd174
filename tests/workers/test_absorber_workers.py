"""The Redis absorber across real worker processes: a shared day budget, dead holders."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conftest import redis_or_skip as shared_redis_or_skip
from tierline.router.errors import BudgetExceeded
from tierline.router.live.absorber import Limits
from tierline.workers.stores.absorber_redis import RedisAbsorberStore

REDIS_URL = os.environ.get("TIERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
NOON = 20_000 * 86_400.0 + 43_200.0  # a fixed UTC noon: the test never crosses midnight
TOKENS_PER_DAY = 100_000
MIN_ESTIMATE, MAX_ESTIMATE = 10, 400
WORKERS = 8
SPAWN = multiprocessing.get_context("spawn")


def redis_or_skip() -> redis.Redis:
    """The test Redis (database 5): skipped when absent locally, a failure under CI."""
    return shared_redis_or_skip(REDIS_URL)  # type: ignore[no-any-return]


class NoonClock:
    """Real seconds elapsed since ``start_s``, counted from a fixed UTC noon (picklable)."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s

    def __call__(self) -> float:
        return NOON + (time.time() - self.start_s)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis_or_skip()
    prefix = f"test:absorber:{uuid.uuid4().hex[:12]}"
    yield prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def _hammer(prefix: str, seed: int, start_s: float, one_by_one: bool, ready: Any, go: Any,
            out: Any) -> None:
    """A worker: reserve bundles, 'call', settle 30-100 % of the estimate, retry the deferred."""
    client = redis.Redis.from_url(REDIS_URL)
    store = RedisAbsorberStore(client, prefix, clock=NoonClock(start_s), ttl_s=30.0)
    client.ping()
    ready.put(seed)
    go.wait()  # start together: spawned processes come up seconds apart on 2 cores
    limits = Limits(tokens_per_day=TOKENS_PER_DAY)
    rng = random.Random(seed)
    waiting: list[int] = []  # deferred estimates, retried first
    settled = calls = deferrals = 0
    give_up_at = time.monotonic() + 25.0
    while time.monotonic() < give_up_at:
        bundle = waiting[:12] + [rng.randint(MIN_ESTIMATE, MAX_ESTIMATE) for _ in range(4)]
        if one_by_one:
            granted, deferred, retry_s = [], [], 0.01
            for tokens in bundle:
                try:
                    granted.append(store.reserve("m", limits, tokens))
                except BudgetExceeded as exc:
                    deferred.append(tokens)
                    retry_s = exc.retry_after_s or retry_s
        else:
            batch = store.reserve_many("m", limits, bundle)
            granted = [batch.granted[i] for i in sorted(batch.granted)]
            deferred = [bundle[i] for i in batch.deferred]
            retry_s = batch.retry_after_s or 0.01
        time.sleep(rng.uniform(0, 0.002))  # the model call: holds stay in flight meanwhile
        used = [(held, round(held.tokens * rng.uniform(0.3, 1.0))) for held in granted]
        if one_by_one:
            for held, actual in used:
                store.settle(held, actual)
        else:
            store.settle_many(used)  # the bundle's answers, settled in one round trip
        settled += sum(actual for _, actual in used)
        calls += len(granted)
        deferrals += len(deferred)
        waiting = (deferred + waiting[12:])[:64]  # a real queue would keep the rest in Postgres
        if not granted:
            if store.usage("m", limits)["settled_tokens"] + MIN_ESTIMATE > TOKENS_PER_DAY:
                break  # not even the smallest request can fit today
            time.sleep(min(retry_s, 0.005))  # holds settle long before they expire
    out.put((settled, calls, deferrals))


def test_eight_workers_fill_a_shared_day_budget_without_exceeding_it(redis_prefix: str):
    ready, go, out = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    start_s = time.time()
    procs = [
        SPAWN.Process(target=_hammer,
                      args=(redis_prefix, seed, start_s, seed % 4 == 0, ready, go, out))
        for seed in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # every worker is up and connected before any starts
        ready.get(timeout=60)
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    settled = sum(r[0] for r in results)
    usage = RedisAbsorberStore(redis_or_skip(), redis_prefix, clock=NoonClock(start_s)).usage(
        "m", Limits(tokens_per_day=TOKENS_PER_DAY)
    )
    assert usage["settled_tokens"] == settled
    assert (usage["held_tokens"], usage["overrun_tokens"], usage["in_flight"]) == (0, 0, 0)
    assert 0.99 * TOKENS_PER_DAY <= settled <= TOKENS_PER_DAY
    assert sum(r[2] for r in results) > 0  # demand was deferred and retried, not just granted
    assert sum(r[1] > 0 for r in results) >= WORKERS // 2  # shared, not taken by one


def _hold_and_hang(prefix: str, tokens: int, ready: Any) -> None:
    """A worker that reserves and then hangs until it is killed."""
    store = RedisAbsorberStore(redis.Redis.from_url(REDIS_URL), prefix, ttl_s=1.5)
    store.reserve("m", Limits(tokens_per_day=tokens), tokens)
    ready.set()
    time.sleep(60)


def test_a_killed_workers_reservation_returns_to_the_budget_after_its_expiry(redis_prefix: str):
    limits = Limits(tokens_per_day=1_000)
    ready = SPAWN.Event()
    holder = SPAWN.Process(target=_hold_and_hang, args=(redis_prefix, 1_000, ready))
    holder.start()
    assert ready.wait(timeout=20)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=5)
    assert holder.exitcode == -signal.SIGKILL
    store = RedisAbsorberStore(redis_or_skip(), redis_prefix)
    with pytest.raises(BudgetExceeded) as caught:
        store.reserve("m", limits, 1)
    assert caught.value.retry_after_s is not None and 0 < caught.value.retry_after_s <= 1.5
    time.sleep(caught.value.retry_after_s + 0.05)
    assert store.reserve("m", limits, 1_000).tokens == 1_000
