"""The memory and Redis absorber stores: same answers step by step, errors at the boundary."""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import redis_or_skip as shared_redis_or_skip
from tierline.router.errors import BudgetExceeded, PolicyError, Unavailable
from tierline.router.live.absorber import BatchDecision, Limits, Reservation
from tierline.router.policy import policy_from_dict
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore
from tierline.workers.stores.absorber_redis import RedisAbsorberStore
from tierline.workers.stores.absorber_store import AbsorberStore, reservation_ids

REDIS_URL = os.environ.get("TIERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
MIDNIGHT = 20_000 * 86_400.0  # 00:00 UTC
LIMITS = Limits(tokens_per_day=3_000, tokens_per_minute=1_200, requests_per_minute=12)
WALK_LIMITS = Limits(tokens_per_day=5_000, tokens_per_minute=2_500, requests_per_minute=15)


def redis_or_skip() -> redis.Redis:
    """The test Redis (database 5): skipped when absent locally, a failure under CI."""
    return shared_redis_or_skip(REDIS_URL)  # type: ignore[no-any-return]


class ScriptedClock:
    """A clock the test moves by hand."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = redis_or_skip()
    prefix = f"test:absorber:{uuid.uuid4().hex[:12]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def _stores(client: redis.Redis, prefix: str, clock: ScriptedClock, ttl_s: float):
    memory = MemoryAbsorberStore(clock=clock, ttl_s=ttl_s)
    shared = RedisAbsorberStore(client, prefix, clock=clock, ttl_s=ttl_s)
    return memory, shared


def _seen(value: Any) -> Any:
    """What a step shows, without the store-specific reservation ids."""
    if isinstance(value, Reservation):
        return ("reservation", value.scope, value.tokens, value.reserved_at_s, value.expires_at_s)
    if isinstance(value, BatchDecision):
        return (
            "batch",
            sorted(value.granted),
            value.deferred,
            value.refused,
            value.retry_after_s,
            value.reason,
        )
    if isinstance(value, BudgetExceeded):
        return ("refused", value.retry_after_s, str(value))
    return value


def _step(
    store: AbsorberStore, op: str, held: list[Reservation], arg: Any, limits: Limits = LIMITS
) -> Any:
    try:
        if op == "reserve":
            out: Any = store.reserve("m", limits, arg)
            held.append(out)
        elif op == "many":
            out = store.reserve_many("m", limits, arg)
            held.extend(out.granted[i] for i in sorted(out.granted))
        elif op == "settle":
            index, actual = arg
            out = store.settle(held.pop(index), actual)
        elif op == "release":
            out = store.release(held.pop(arg))
        elif op == "settle_many":  # the newest holds, each using a fraction of its tokens
            newest = [held.pop() for _ in arg]
            out = store.settle_many(
                [(r, int(r.tokens * f)) for r, f in zip(newest, arg, strict=True)]
            )
        elif op == "release_many":
            out = store.release_many([held.pop() for _ in range(arg)])
        else:
            out = store.usage("m", limits)
    except BudgetExceeded as exc:
        out = exc
    return _seen(out)


SCRIPT: list[tuple[float, str, Any]] = [
    # (seconds after 23:50 UTC, op, argument); the UTC day rolls at 600 s; holds live 100 s
    (0.0, "reserve", 400),
    (0.5, "many", [300, 5_000, 200, 900, 100]),  # 5000 > day: refused; 900 > minute: deferred
    (1.0, "settle", (0, 250)),  # refund 150
    (1.2, "settle", (0, 420)),  # overrun 120
    (2.0, "release", 0),
    (2.0, "usage", None),
    (3.0, "reserve", 1_100),  # the minute window is full
    (62.0, "reserve", 1_100),  # bucket 0 has left the window
    (63.0, "usage", None),
    (130.0, "reserve", 1_100),  # the hold made at 0.5 expired at 100.5
    (131.0, "many", [500, 400, 100, 20]),  # the last of the day's room; the rest in flight
    (140.0, "settle", (1, 1_000)),
    (141.0, "many", [400, 150]),
    (235.0, "usage", None),  # every hold has expired
    (236.0, "settle", (0, 100)),  # a late settle of an expired hold still counts
    (300.0, "reserve", 1_150),
    (301.0, "settle", (-1, 1_200)),  # overrun 50
    (302.0, "reserve", 40),  # day full until midnight
    (303.0, "many", [10, 20, 30]),
    (599.9, "reserve", 100),
    (600.0, "reserve", 100),  # a new UTC day
    (601.0, "settle", (-2, 20)),  # yesterday's hold, settled late after midnight
    (601.5, "usage", None),
    (605.0, "many", [50] * 13),  # requests per minute binds
    (666.0, "many", [10] * 13),
    (667.0, "usage", None),
    (668.0, "settle_many", [1.0, 0.5, 0.0, 1.2]),  # a bundle settled in one call
    (669.0, "release_many", 2),
    (670.0, "usage", None),
]


def test_memory_and_redis_stores_agree_step_by_step(redis_prefix):
    client, prefix = redis_prefix
    clock = ScriptedClock(MIDNIGHT - 600.0)
    stores = _stores(client, prefix, clock, ttl_s=100.0)
    held: tuple[list[Reservation], list[Reservation]] = ([], [])
    for number, (at_s, op, arg) in enumerate(SCRIPT):
        clock.now_s = MIDNIGHT - 600.0 + at_s
        memory, shared = (_step(s, op, h, arg) for s, h in zip(stores, held, strict=True))
        assert memory == shared, f"step {number} ({op} at {at_s} s)"


STEPS_S = [0.0, 0.1, 0.7, 2.5, 13.0, 45.0, 130.0, 21_600.0, -0.6, -3.0]
WEIGHTS = [30, 20, 20, 10, 6, 4, 4, 1, 3, 2]


def test_memory_and_redis_stores_agree_on_a_random_walk(redis_prefix):
    client, prefix = redis_prefix
    rng = random.Random(20_261_128)
    clock = ScriptedClock(MIDNIGHT - 300.0)
    stores = _stores(client, prefix, clock, ttl_s=60.0)
    held: tuple[list[Reservation], list[Reservation]] = ([], [])
    for number in range(1_500):
        # negative steps are another worker's clock running behind; 130 s idles the minute
        clock.now_s += rng.choices(STEPS_S, WEIGHTS)[0]
        roll = rng.random()
        if roll < 0.3:
            op, arg = "reserve", rng.choice([0, rng.randint(1, 500), 4_000])
        elif roll < 0.5:
            op, arg = "many", [rng.randint(0, 400) for _ in range(rng.randint(1, 6))]
        elif roll < 0.75 and held[0]:
            index = rng.choice([-1, -1, rng.randrange(len(held[0]))])  # mostly the newest
            op, arg = "settle", (index, int(held[0][index].tokens * rng.uniform(0, 1.3)))
        elif roll < 0.8 and held[0]:
            op, arg = "release", rng.randrange(len(held[0]))
        elif roll < 0.88 and held[0]:
            count = rng.randint(1, min(6, len(held[0])))
            op, arg = "settle_many", [rng.uniform(0, 1.3) for _ in range(count)]
        elif roll < 0.9 and held[0]:
            op, arg = "release_many", rng.randint(1, min(3, len(held[0])))
        else:
            op, arg = "usage", None
        memory, shared = (
            _step(s, op, h, arg, WALK_LIMITS) for s, h in zip(stores, held, strict=True)
        )
        assert memory == shared, f"step {number}: {op} {arg} at {clock.now_s - MIDNIGHT} s"


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_reserving_more_than_a_whole_day_is_refused_for_good(kind: str, redis_prefix_or_none):
    if kind == "memory":
        store: AbsorberStore = MemoryAbsorberStore()
    else:
        client, prefix = redis_prefix_or_none()
        store = RedisAbsorberStore(client, prefix)
    with pytest.raises(BudgetExceeded) as caught:
        store.reserve("m", Limits(tokens_per_day=1_000), 1_001)
    assert caught.value.retry_after_s is None and not caught.value.retryable
    batch = store.reserve_many("m", Limits(tokens_per_day=1_000), [1_001, 10])
    assert (batch.refused, sorted(batch.granted)) == ([0], [1])


@pytest.fixture
def redis_prefix_or_none(request):
    """Builds the Redis fixture lazily, so memory-only cases never need Redis."""
    return lambda: request.getfixturevalue("redis_prefix")


def test_a_busy_day_raises_budget_exceeded_with_a_retry_time(redis_prefix):
    client, prefix = redis_prefix
    clock = ScriptedClock(MIDNIGHT - 10.0)
    store = RedisAbsorberStore(client, prefix, clock=clock)
    store.settle(store.reserve("m", Limits(tokens_per_day=100), 100), 100)
    with pytest.raises(BudgetExceeded) as caught:
        store.reserve("m", Limits(tokens_per_day=100), 1)
    assert caught.value.retry_after_s == pytest.approx(10.0) and caught.value.retryable


def test_an_unreachable_redis_is_unavailable_chained_to_the_redis_error():
    # no client retries: redis-py 8 retries a refused connection for ~4 s by default
    client = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    store = RedisAbsorberStore(client, "test:absorber:down")
    with pytest.raises(Unavailable) as caught:
        store.reserve("m", LIMITS, 10)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    assert caught.value.retryable


def test_a_missing_redis_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys.modules[__name__], "REDIS_URL", "redis://127.0.0.1:1/5")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        redis_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        redis_or_skip()


def _policy(limits: dict[str, Any]) -> dict[str, Any]:
    lanes = {
        lane: {"latency_budget_s": 5, "max_output_tokens": 16}
        for lane in ("realtime", "standard", "batch")
    }
    model = {"usd_per_1m_input": 0.1, "usd_per_1m_output": 0.4, "limits": limits}
    return {"tiers": {"t0": ["small"]}, "models": {"small": model}, "lanes": lanes}


@pytest.mark.parametrize(
    ("limits", "key"),
    [
        ({"tokens_per_day": -5}, "models.small.limits.tokens_per_day"),
        ({"tokens_per_day": "lots"}, "models.small.limits.tokens_per_day"),
        ({"tokens_per_minute": 0}, "models.small.limits.tokens_per_minute"),
        ({"requests_per_minute": "ten"}, "models.small.limits.requests_per_minute"),
        ({"tokens_per_hour": 5}, "models.small.limits.tokens_per_hour"),
    ],
)
def test_a_policy_with_a_bad_limit_fails_naming_the_key(limits: dict[str, Any], key: str):
    with pytest.raises(PolicyError) as caught:
        policy_from_dict(_policy(limits), "dev.yaml")
    assert caught.value.key == key and caught.value.source == "dev.yaml"


def test_policy_limits_become_absorber_limits():
    policy = policy_from_dict(_policy({"tokens_per_day": 50_000, "requests_per_minute": 60}))
    limits = Limits.from_model_limits(policy.models["small"].limits)
    assert limits == Limits(tokens_per_day=50_000, requests_per_minute=60)


def _ids_in_child(out: Any) -> None:
    out.put(reservation_ids(3))


def test_reservation_ids_stay_unique_in_forked_workers():
    # Celery prefork forks workers after import: a child must not repeat its parent's ids
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    before = reservation_ids(3)
    child = fork.Process(target=_ids_in_child, args=(out,))
    child.start()
    in_child = out.get(timeout=10)
    child.join()
    after = reservation_ids(3)
    assert len(set(before + in_child + after)) == 9
    assert in_child[0].split(".")[:2] != before[0].split(".")[:2]


def test_both_stores_bound_the_in_flight_walk_alike(redis_prefix):
    client, prefix = redis_prefix
    clock = ScriptedClock(MIDNIGHT - 600.0)
    limits = Limits(tokens_per_day=1_100)
    seen = []
    for store in _stores(client, prefix, clock, ttl_s=100.0):
        clock.now_s = MIDNIGHT - 600.0
        store.reserve_many("m", limits, [1] * 1_000)
        clock.now_s += 1.0
        store.reserve_many("m", limits, [1] * 100)
        clock.now_s += 1.0
        with pytest.raises(BudgetExceeded) as caught:
            store.reserve("m", limits, 1_100)  # needs all 1,100 holds gone: +101 s
        seen.append(caught.value.retry_after_s)
    assert seen == [98.0, 98.0]  # the walk stops at the 1,000th hold (+100 s)
