"""The model health registry: Redis keeps what the pure updates compute, for every worker,
and an unreachable Redis costs advice, never calls."""

from __future__ import annotations

import random
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tierline.router.live.breaker import FAILS_TO_OPEN, OPEN_S
from tierline.router.live.latency import LatencySums, estimate, observe
from tierline.workers.engine.health import (
    ANSWERED,
    CUT_OFF,
    FAILED,
    MemoryHealthStore,
    RedisHealthStore,
    Seen,
)

CALLS = [(120, 0.9), (40, 0.5), (300, 1.8), (80, 0.7), (200, 1.3), (10, 0.35)]


def _stores(redis_url: str) -> list[MemoryHealthStore | RedisHealthStore]:
    return [MemoryHealthStore(), RedisHealthStore(redis.Redis.from_url(redis_url))]


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def test_redis_and_memory_keep_the_latency_sums_of_the_pure_update(redis_url: str) -> None:
    model, other = _name(), _name()
    want = LatencySums()
    for tokens, seconds in CALLS:
        want = observe(want, tokens, seconds)
    stores = _stores(redis_url)
    for store in stores:
        store.record([Seen(model, ANSWERED, t, s) for t, s in CALLS[:3]], 100.0)  # in call order
        store.record([Seen(model, ANSWERED, t, s) for t, s in CALLS[3:]] + [Seen(other, FAILED)],
                     101.0)
    for store in stores:
        got = store.read([model, other, "never-called"])
        assert set(got) == {model, other}
        assert got[model].latency.calls == want.calls == len(CALLS)
        for name in ("w", "sx", "sy", "sxx", "sxy"):
            assert getattr(got[model].latency, name) == pytest.approx(getattr(want, name),
                                                                      rel=1e-12)
        assert got[other].latency.calls == 0 and got[other].breaker.fails == 1
    e = estimate(model, stores[1].read([model])[model].latency)
    assert e is not None and e.per_token_s > 0


def test_failures_in_a_row_open_the_breaker_and_an_answer_closes_it(redis_url: str) -> None:
    model = _name()
    for store in _stores(redis_url):
        store.record([Seen(model, FAILED)] * (FAILS_TO_OPEN - 1) + [Seen(model, ANSWERED, 5, 0.1)]
                     + [Seen(model, FAILED)] * (FAILS_TO_OPEN - 1), 1000.0)
        breaker = store.read([model])[model].breaker
        assert breaker.fails == FAILS_TO_OPEN - 1  # the answer reset the count
        assert breaker.refusal(model, 1000.0) is None
        store.record([Seen(model, FAILED)], 1000.0)
        breaker = store.read([model])[model].breaker
        assert breaker.open_until == pytest.approx(1000.0 + OPEN_S)
        why = breaker.refusal(model, 1010.0)
        assert why is not None and why.startswith(f"{model}: {FAILS_TO_OPEN} calls in a row failed")
        assert breaker.refusal(model, 1000.0 + OPEN_S) is None  # then calls go through again
        store.record([Seen(model, FAILED)], 1000.0 + OPEN_S + 1)  # ...and one failure reopens
        assert store.read([model])[model].breaker.refusal(model, 1000.0 + OPEN_S + 2)
        store.record([Seen(model, ANSWERED, 5, 0.1)], 1000.0 + OPEN_S + 3)
        assert store.read([model])[model].breaker.refusal(model, 1000.0 + OPEN_S + 4) is None


def test_a_call_cut_off_by_its_deadline_teaches_latency_but_is_no_answer(redis_url: str
                                                                         ) -> None:
    model = _name()
    for store in _stores(redis_url):
        store.record([Seen(model, FAILED)] * 2 + [Seen(model, CUT_OFF, 256, 2.0)], 0.0)
        health = store.read([model])[model]
        assert health.latency.calls == 1 and health.latency.sy == pytest.approx(2.0)
        assert health.latency.sx == pytest.approx(256)
        assert health.breaker.fails == 2  # not reset, as an answer would


def test_two_workers_share_one_registry(redis_url: str) -> None:
    model = _name()
    one, two = (RedisHealthStore(redis.Redis.from_url(redis_url)) for _ in range(2))
    one.record([Seen(model, ANSWERED, 100, 1.0)] * 3, 0.0)
    two.record([Seen(model, ANSWERED, 100, 1.0)] * 2, 0.0)
    assert estimate(model, one.read([model])[model].latency) is not None  # 5 calls between them


def test_an_unreachable_redis_costs_advice_not_calls(caplog: pytest.LogCaptureFixture) -> None:
    nothing = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisHealthStore(nothing)
    store.record([Seen("m", ANSWERED, 10, 0.1)], 0.0)  # does not raise
    assert store.read(["m"]) == {}
    assert "cannot record 1 calls in the model health registry" in caplog.text
    assert "calls go ahead without it" in caplog.text


def test_rounds_folded_for_redis_end_where_calls_one_by_one_do(redis_url: str) -> None:
    rng = random.Random(11)
    models = [_name() for _ in range(3)]
    stores = _stores(redis_url)
    now, opened = 5000.0, 0
    for _ in range(60):  # rounds of 1-12 calls, of mixed ends, across three models
        now += rng.uniform(0, 20)
        seen = [Seen(rng.choice(models), kind, rng.randint(1, 400), rng.uniform(0.05, 3))
                for kind in rng.choices([ANSWERED, CUT_OFF, FAILED], [2, 1, 3],
                                        k=rng.randint(1, 12))]
        for store in stores:
            store.record(seen, now)
        one_by_one, folded = (store.read(models) for store in stores)
        assert set(one_by_one) == set(folded)
        opened += sum(h.breaker.refusal(m, now) is not None for m, h in folded.items())
        for m in one_by_one:
            assert folded[m].breaker == one_by_one[m].breaker
            assert folded[m].latency.calls == one_by_one[m].latency.calls
            for name in ("w", "sx", "sy", "sxx", "sxy"):
                assert getattr(folded[m].latency, name) == pytest.approx(
                    getattr(one_by_one[m].latency, name), rel=1e-9)
    assert opened > 0  # the walk did open breakers
