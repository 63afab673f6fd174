"""Live shadow evaluation through a real tier worker process: a sampled request is also sent
to the top tier after it is answered, the shadow call is charged apart, its graded outcome
is recorded, the day's shadow budget stops further shadow calls, and a failing shadow call
never touches the request's answer."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import select

from tests.conftest import publish_nowhere
from tests.workers.scripted import completion, serve
from tierline.bench.children import spawn, stop
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.ledger import reconcile, unknowns
from tierline.record.schema import attempts, charges, results, shadow_outcomes
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "policies" / "demo.yaml"
PROMPTS = [f"what is 6 times {n}?" for n in range(5)]
pytestmark = pytest.mark.integration


def _policy(tmp_path: Path, learning: dict[str, Any]) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    data["learning"] = learning
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def _worker(tmp_path: Path, redis_url: str, database_url: str, policy: Path,
            reply: Callable[[str, str], tuple[Any, ...]], use_broker: Any) -> Iterator[Runtime]:
    with serve(reply) as url, _worker_at(tmp_path, redis_url, database_url, policy, url,
                                         use_broker) as rt:
        yield rt


@contextmanager
def _worker_at(tmp_path: Path, redis_url: str, database_url: str, policy: Path, url: str,
               use_broker: Any) -> Iterator[Runtime]:
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, "TIERLINE_BROKER_URL": redis_url,
           "TIERLINE_DATABASE_URL": database_url, "TIERLINE_POLICY": str(policy),
           "TIERLINE_SIM_URL": url}
    worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "all", "-c", "1",
                    "--", "--without-mingle", "--without-gossip", "-n", "shadow@%h"],
                   env, tmp_path / "worker.log", cwd=ROOT)
    try:
        rt = Runtime(Settings(redis_url, database_url, policy), load_policy(policy), env)
        install(rt)
        use_broker(redis_url)
        yield rt
    finally:
        stop(worker)
        redis.Redis.from_url(redis_url).flushdb()


def _answered(rt: Runtime, prompts: list[str], tmp_path: Path) -> list[Any]:
    """Submit, wait for every result, then for the shadow calls: the bundle's task sends
    them to the shadow queue before it acknowledges its own message, and the shadow task
    acknowledges its message when it ends, so they are over once the broker holds no
    message, waiting or unacknowledged."""
    Client(rt).submit_many(prompts, lane="batch")
    deadline = time.monotonic() + 40
    done: list[Any] = []
    while time.monotonic() < deadline and len(done) < len(prompts):
        time.sleep(0.3)
        with rt.engine.connect() as conn:
            done = conn.execute(select(results.c.status, results.c.model,
                                       results.c.content)).all()
    assert len(done) == len(prompts), (tmp_path / "worker.log").read_text()[-3000:]
    broker = redis.Redis.from_url(rt.settings.broker_url)
    while time.monotonic() < deadline and (broker.hlen("unacked") or any(
            broker.llen(key) for key in broker.scan_iter(_type="list"))):
        time.sleep(0.05)
    return done


def test_a_sampled_request_is_shadowed_to_the_top_tier_and_charged_apart(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    policy = _policy(tmp_path, {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5})
    with _worker(tmp_path, own_broker, own_postgres_url, policy,
                 lambda _m, _a: (200, completion("The answer is 42.")), use_broker) as rt:
        done = _answered(rt, PROMPTS[:1], tmp_path)
        with rt.engine.connect() as conn:
            shadow_calls = conn.execute(select(attempts.c.model, attempts.c.ok)
                                        .where(attempts.c.shadow)).all()
            shadow_charged = conn.execute(select(charges.c.model, charges.c.usd)
                                          .where(charges.c.shadow)).all()
            graded = conn.execute(select(shadow_outcomes.c.model, shadow_outcomes.c.shadow,
                                         shadow_outcomes.c.answer,
                                         shadow_outcomes.c.agrees_with_top)
                                  .order_by(shadow_outcomes.c.shadow)).all()
            balance = reconcile(conn)
            written_ahead = unknowns(conn).in_flight  # written ahead, never recorded
    assert [tuple(r) for r in done] == [("ok", "sim-nano", "The answer is 42.")]
    assert written_ahead == 0  # the shadow call was on record before it was made, then settled
    assert [tuple(r) for r in shadow_calls] == [("sim-frontier", True)]
    assert [r.model for r in shadow_charged] == ["sim-frontier"] and shadow_charged[0].usd > 0
    assert [tuple(r) for r in graded] == [("sim-nano", False, "42", True),
                                          ("sim-frontier", True, "42", True)]
    assert balance.balanced and balance.shadow_usd == shadow_charged[0].usd


def test_the_daily_shadow_budget_stops_shadow_calls(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    # Each frontier answer costs 0.0102 USD (40 in, 500 out): a 0.025 budget takes two.
    policy = _policy(tmp_path, {"shadow_rate": 1.0, "lanes": ["batch"],
                                "usd_per_day_max": 0.025})

    def reply(model: str, _asked: str) -> tuple[Any, ...]:
        return 200, completion("The answer is 42.", 40, 500 if model == "sim-frontier" else 3)

    with _worker(tmp_path, own_broker, own_postgres_url, policy, reply, use_broker) as rt:
        done = _answered(rt, PROMPTS, tmp_path)
        with rt.engine.connect() as conn:
            shadow_usd = conn.execute(select(charges.c.usd).where(charges.c.shadow)
                                      ).scalars().all()
            assert reconcile(conn).balanced
    assert [r.status for r in done] == ["ok"] * len(PROMPTS)
    assert len(shadow_usd) == 2
    assert sum(shadow_usd) <= 0.025


def test_a_failing_shadow_call_leaves_the_answer_alone(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    policy = _policy(tmp_path, {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5,
                                "tiers": "all"})

    def reply(model: str, _asked: str) -> tuple[Any, ...]:
        if model == "sim-frontier":
            return 400, {"error": {"message": "shadow calls are refused here"}}
        return 200, completion(f"{model} says 42")

    with _worker(tmp_path, own_broker, own_postgres_url, policy, reply, use_broker) as rt:
        done = _answered(rt, PROMPTS[:2], tmp_path)
        with rt.engine.connect() as conn:
            shadow_calls = conn.execute(select(attempts.c.model, attempts.c.ok)
                                        .where(attempts.c.shadow)
                                        .order_by(attempts.c.model)).all()
            graded = conn.execute(select(shadow_outcomes.c.model,
                                         shadow_outcomes.c.agrees_with_top)).all()
            assert reconcile(conn).balanced
    assert [tuple(r) for r in done] == [("ok", "sim-nano", "sim-nano says 42")] * 2
    assert sorted(tuple(r) for r in shadow_calls) == [("sim-frontier", False)] * 2 + [
        ("sim-mid", True)] * 2
    # No top tier answer to grade by: recorded, ungraded.
    assert {r.agrees_with_top for r in graded} == {None}


def _judged_policy(tmp_path: Path) -> Path:
    return _policy(tmp_path, {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5,
                              "grader": "judge", "judge_model": "sim-mid"})


def _shadowed(rt: Runtime) -> tuple[list[Any], list[Any], list[Any], Any]:
    with rt.engine.connect() as conn:
        shadow_calls = conn.execute(select(attempts.c.model, attempts.c.seq, attempts.c.ok)
                                    .where(attempts.c.shadow).order_by(attempts.c.seq)).all()
        charged = conn.execute(select(charges.c.model).where(charges.c.shadow)
                               .order_by(charges.c.model)).scalars().all()
        graded = conn.execute(select(shadow_outcomes.c.model, shadow_outcomes.c.answer,
                                     shadow_outcomes.c.agrees_with_top)
                              .order_by(shadow_outcomes.c.shadow)).all()
        return shadow_calls, charged, graded, reconcile(conn)


def test_a_judge_model_grades_the_given_answer_as_a_shadow_call(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    asked_judge: list[str] = []

    def reply(model: str, asked: str) -> tuple[Any, ...]:
        if "Labels: same, different" in asked:
            asked_judge.append(asked)
            return 200, completion("same")
        return 200, completion("The answer is 42." if model == "sim-frontier"
                               else "It comes to forty-one, so 41.")

    with _worker(tmp_path, own_broker, own_postgres_url, _judged_policy(tmp_path), reply,
                 use_broker) as rt:
        _answered(rt, PROMPTS[:1], tmp_path)
        shadow_calls, charged, graded, balance = _shadowed(rt)
    assert [tuple(r) for r in shadow_calls] == [("sim-frontier", 1002, True),
                                                ("sim-mid", 1003, True)]
    assert charged == ["sim-frontier", "sim-mid"] and balance.balanced
    # The extracted answers differ (41, 42); the judge said they agree, and its word stands.
    assert [tuple(r) for r in graded] == [("sim-nano", "41", True),
                                          ("sim-frontier", "42", True)]
    assert len(asked_judge) == 1 and "forty-one" in asked_judge[0] and "42" in asked_judge[0]


def test_the_judge_grades_against_the_simulator(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    from tierline.sim.fleet import fleet_from_policy
    from tierline.sim.server import start

    with start(fleet_from_policy(DEMO, seed=3)) as server, _worker_at(
            tmp_path, own_broker, own_postgres_url, _judged_policy(tmp_path), server.url,
            use_broker) as rt:
        _answered(rt, PROMPTS[:3], tmp_path)
        shadow_calls, charged, graded, balance = _shadowed(rt)
    assert sorted(r.model for r in shadow_calls) == ["sim-frontier"] * 3 + ["sim-mid"] * 3
    assert len(charged) == 6 and balance.balanced
    # The simulator's judge answers one of the two labels, so every given answer is judged.
    assert {type(r.agrees_with_top) for r in graded if r.model == "sim-nano"} == {bool}


def test_shadow_calls_are_a_task_of_their_own_that_a_shadow_worker_takes(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    from tierline.workers import routing
    from tierline.workers.app import SHADOW_QUEUE
    from tierline.workers.tasks import answer_bundle

    policy = _policy(tmp_path, {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5})
    broker = redis.Redis.from_url(own_broker)
    broker.flushdb()
    with serve(lambda _m, _a: (200, completion("The answer is 42."))) as url:
        env = {**os.environ, "TIERLINE_BROKER_URL": own_broker,
               "TIERLINE_DATABASE_URL": own_postgres_url, "TIERLINE_POLICY": str(policy),
               "TIERLINE_SIM_URL": url}
        rt = Runtime(Settings(own_broker, own_postgres_url, policy), load_policy(policy), env)
        install(rt)
        use_broker(own_broker)
        ids = Client(rt, publish=publish_nowhere).submit_many(PROMPTS[:2],
                                                              lane="batch").request_ids
        bundles: list[list[str]] = []
        routing.route(rt, ids, lambda bundle, *_: bundles.append(bundle))
        # The bundle's task answers and ends; its sample waits on the shadow queue.
        assert sum(answer_bundle(rt, b, resumed=False, queue=None) for b in bundles) == 2
        with rt.engine.connect() as conn:
            assert conn.execute(select(attempts.c.id).where(attempts.c.shadow)).all() == []
        assert broker.llen(SHADOW_QUEUE) == len(bundles)
        worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "shadow", "-c",
                        "1", "--", "--without-mingle", "--without-gossip", "-n", "shade@%h"],
                       env, tmp_path / "worker.log", cwd=ROOT)
        try:
            deadline = time.monotonic() + 40
            shadowed: list[Any] = []
            while time.monotonic() < deadline and len(shadowed) < 2:
                time.sleep(0.3)
                with rt.engine.connect() as conn:
                    shadowed = conn.execute(select(attempts.c.request_id)
                                            .where(attempts.c.shadow)).all()
        finally:
            stop(worker)
            broker.flushdb()
    assert sorted(r.request_id for r in shadowed) == sorted(ids), \
        (tmp_path / "worker.log").read_text()[-3000:]
