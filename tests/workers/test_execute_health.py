"""The tier worker heeds the model health registry. A model that its recent calls show
cannot answer within what is left of a request's budget is not called: the request falls
back to a faster model, keeps the answer its cascade already paid for, or fails at once with
the estimate in its error. A model whose calls keep failing is left alone for a while."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests import recorded
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.schema import attempts, charges, results
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.labels import build_prompt
from tierline.router.learned.training import train_routing
from tierline.router.live.breaker import FAILS_TO_OPEN, OPEN_S
from tierline.router.live.latency import MIN_CALLS
from tierline.workers.engine import execute
from tierline.workers.engine.health import HealthStore
from tierline.workers.runtime import Runtime

SLOW_S = 0.6  # how long sim-mid takes to answer
ANSWERS = {"sim-nano": "Hmm, hard to say.", "sim-mid": "refund", "sim-frontier": "card_lost"}
CALLS: dict[str, int] = {}
DOWN: set[str] = set()
LABELS = ["refund", "card_lost", "transfer"]


def _reply(model: str, _asked: str) -> tuple[int, dict[str, object]]:
    CALLS[model] = CALLS.get(model, 0) + 1
    if model in DOWN:
        return 503, {"error": {"message": "down"}}
    if model == "sim-mid":
        time.sleep(SLOW_S)
    return 200, completion(ANSWERS[model], tokens_out=20)


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


def _runtime(tmp_path: Path, url: str, strategy: dict[str, Any], *, first_tier: str = "t0",
             fail_fast: bool = True, health: HealthStore | None = None) -> Runtime:
    data = demo_policy(strategy)
    data["classifier"]["band_tiers"] = dict.fromkeys(("low", "mid", "high"), first_tier)
    data["failure"] = {"fail_fast": fail_fast}
    return runtime(tmp_path, url, data, health=health)


def _learn_that_sim_mid_is_slow(rt: Runtime) -> None:
    """Five climbs to sim-mid with time to spare: the registry learns from real calls."""
    prompt = build_prompt("where is my money", LABELS)
    route_here(rt, [{"prompt": prompt, "lane": "batch"} for _ in range(5)])
    sums = rt.health.read(["sim-mid"])["sim-mid"].latency
    assert sums.calls == 5 and sums.sy / sums.w >= SLOW_S


def _last(rt: Runtime) -> tuple[Any, list[tuple[str, bool, str | None]], int]:
    """The newest request's result, its attempts in order, and how many were charged."""
    with rt.engine.connect() as conn:
        result = conn.execute(select(results).order_by(results.c.finished_at.desc())).first()
        assert result is not None
        tried = conn.execute(select(attempts.c.model, attempts.c.ok, attempts.c.error)
                             .where(attempts.c.request_id == result.request_id)
                             .order_by(attempts.c.seq)).all()
        paid = conn.execute(select(charges.c.attempt_id)
                            .where(charges.c.attempt_id.like(f"{result.request_id}%"))).all()
    return result, [tuple(a) for a in tried], len(paid)  # type: ignore[misc]


def _urgent(prompt: str, budget_s: float = 0.4) -> dict[str, Any]:
    return {"prompt": prompt, "lane": "realtime", "latency_budget_s": budget_s}


def test_a_cascade_keeps_its_answer_rather_than_climb_to_a_model_too_slow_for_the_budget(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7})
    _learn_that_sim_mid_is_slow(rt)
    before = CALLS.get("sim-mid", 0)
    route_here(rt, [_urgent(build_prompt("where is my money", LABELS))])
    result, tried, paid = _last(rt)
    assert CALLS.get("sim-mid", 0) == before  # not called
    assert (result.status, result.model) == ("ok", "sim-nano")
    assert [(m, ok) for m, ok, _ in tried] == [("sim-nano", True), ("sim-mid", False)]
    assert tried[1][2].startswith("TooSlow: sim-mid: expected 0.6")
    assert paid == 1


def test_a_request_falls_back_to_a_faster_model_of_its_chain(tmp_path: Path, models_url: str
                                                              ) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7})
    _learn_that_sim_mid_is_slow(rt)
    single = _runtime(tmp_path, models_url, {"kind": "single"}, first_tier="t1",
                      health=rt.health)  # the same registry, as on Redis
    before = CALLS.get("sim-mid", 0)
    route_here(single, [_urgent("write me a haiku about autumn")])
    result, tried, _ = _last(single)
    assert CALLS.get("sim-mid", 0) == before
    assert (result.status, result.model) == ("ok", "sim-nano")
    assert [(m, ok) for m, ok, _ in tried] == [("sim-mid", False), ("sim-nano", True)]


def test_with_no_faster_model_the_request_fails_at_once_saying_why(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7})
    _learn_that_sim_mid_is_slow(rt)
    data = demo_policy({"kind": "single"})
    data["tiers"] = {"t0": ["sim-mid"], "t1": ["sim-frontier"]}  # nothing below sim-mid
    alone = runtime(tmp_path, models_url, data, f"sqlite:///{tmp_path / 'alone.sqlite'}",
                    health=rt.health)
    before = CALLS.get("sim-mid", 0)
    route_here(alone, [_urgent("write me a haiku about autumn", budget_s=5.0),
                       _urgent("write me a haiku about winter", budget_s=0.3)])
    with alone.engine.connect() as conn:
        ended = sorted(conn.execute(select(results.c.status, results.c.error)).all())
    assert CALLS.get("sim-mid", 0) == before + 1  # only for the request with time for it
    assert [status for status, _ in ended] == ["failed", "ok"]
    assert ended[0][1].startswith("TooSlow: sim-mid: expected 0.6")


def test_a_model_too_slow_for_all_its_traffic_is_learned_from_the_calls_cut_off(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7})
    prompt = build_prompt("where is my money", LABELS)
    before = CALLS.get("sim-mid", 0)
    # Each climb is cut off at 0.5 s (sim-mid takes 0.6 s), which counts as 0.75 s at most.
    route_here(rt, [_urgent(prompt, budget_s=0.5) for _ in range(MIN_CALLS)])
    assert CALLS.get("sim-mid", 0) == before + MIN_CALLS
    learned = rt.health.read(["sim-mid"])["sim-mid"]
    assert learned.latency.calls == MIN_CALLS and learned.breaker.fails == 0
    route_here(rt, [_urgent(prompt)])
    result, tried, _ = _last(rt)
    assert CALLS.get("sim-mid", 0) == before + MIN_CALLS  # now known too slow: not called
    assert result.model == "sim-nano" and tried[1][2].startswith("TooSlow: sim-mid: expected")


def test_without_fail_fast_the_slow_model_is_called_anyway(tmp_path: Path, models_url: str
                                                           ) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  fail_fast=False)
    _learn_that_sim_mid_is_slow(rt)
    before = CALLS.get("sim-mid", 0)
    route_here(rt, [_urgent(build_prompt("where is my money", LABELS))])
    result, tried, _ = _last(rt)
    assert CALLS.get("sim-mid", 0) == before + 1
    assert result.model == "sim-nano"  # the call ran out of time; the cascade kept its answer
    assert tried[1][:2] == ("sim-mid", False) and "timed out" in tried[1][2]
    assert tried[1][2].startswith("CutOff")  # the budget's doing, not the model's:
    assert rt.health.read(["sim-mid"])["sim-mid"].breaker.fails == 0  # no strike against it


def test_a_model_that_keeps_failing_is_left_alone_and_its_requests_fall_back_at_once(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"}, first_tier="t1")
    DOWN.add("sim-mid")
    try:
        route_here(rt, [f"write me a haiku about the number {i}" for i in range(FAILS_TO_OPEN)])
        failing = CALLS["sim-mid"]  # each tried with its retries, then sim-nano answered
        assert rt.health.read(["sim-mid"])["sim-mid"].breaker.fails == FAILS_TO_OPEN
        route_here(rt, ["write me a haiku about spring"])
    finally:
        DOWN.clear()
    result, tried, paid = _last(rt)
    assert CALLS["sim-mid"] == failing  # not called again
    assert (result.status, result.model) == ("ok", "sim-nano") and paid == 1
    assert [(m, ok) for m, ok, _ in tried] == [("sim-mid", False), ("sim-nano", True)]
    assert tried[0][2].startswith(f"CircuitOpen: sim-mid: {FAILS_TO_OPEN} calls in a row failed")


def test_a_request_with_time_to_wait_outlasts_an_outage_of_every_model_it_may_use(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})  # sim-nano, and nothing below
    DOWN.add("sim-nano")
    try:
        outcomes = route_here(rt, [{"prompt": "write me a haiku about rain", "lane": "batch"},
                                   _urgent("write me a haiku about snow", budget_s=10.0)])
    finally:
        DOWN.clear()
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.request_id, results.c.status)).all()
    deferred = [rid for o in outcomes for rid in o.deferred]
    assert len(deferred) == 1 and max(o.retry_after_s for o in outcomes) == OPEN_S
    assert [status for _, status in ended] == ["failed"]  # realtime: no time to wait
    assert ended[0][0] != deferred[0]
    execute.execute(rt, deferred, resumed=True)  # the countdown's redelivery, model back up
    result, tried, paid = _last(rt)
    assert (result.request_id, result.status, result.model) == (deferred[0], "ok", "sim-nano")
    assert [ok for _, ok, _ in tried] == [False, True] and paid == 1


def test_a_request_stops_waiting_for_a_model_that_stays_down(
        tmp_path: Path, models_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tierline.router.live.breaker.MAX_TRIES_DOWN", 3)
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    DOWN.add("sim-nano")
    try:
        outcomes = route_here(rt, [{"prompt": "write me a haiku about fog", "lane": "batch"}])
        waits = 0
        while outcomes[-1].deferred:
            waits += 1
            outcomes.append(execute.execute(rt, outcomes[-1].deferred, resumed=True))
    finally:
        DOWN.clear()
    result, tried, paid = _last(rt)
    assert waits == 2 and result.status == "failed" and paid == 0
    assert len(tried) == 3 and not any(ok for _, ok, _ in tried)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    accuracy = {"sim-nano": 0.3, "sim-mid": 0.6, "sim-frontier": 0.95}
    prices = {"sim-nano": (0.1, 0.4), "sim-mid": (0.8, 3.2), "sim-frontier": (5.0, 20.0)}
    path = tmp_path_factory.mktemp("bundle") / "routing"
    save_bundle(bundle_of(train_routing(recorded.items(120, accuracy), prices)), path)
    return path


def test_a_learned_strategy_waits_out_an_outage_of_its_first_model_too(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = runtime(tmp_path, models_url, demo_policy(
        {"kind": "learned", "confidence_bar": 0.5, "options": {"bundle": str(bundle_path)}}))
    DOWN.update(["sim-nano", "sim-mid", "sim-frontier"])
    try:
        outcomes = route_here(rt, [{"prompt": "question 3", "lane": "batch"},
                                   _urgent("question 4", budget_s=10.0)])
    finally:
        DOWN.clear()
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.request_id, results.c.status)).all()
    deferred = [rid for o in outcomes for rid in o.deferred]
    assert len(deferred) == 1 and [status for _, status in ended] == ["failed"]
    assert ended[0][0] != deferred[0]
    execute.execute(rt, deferred, resumed=True)
    result, tried, paid = _last(rt)
    assert (result.request_id, result.status) == (deferred[0], "ok") and paid >= 1
    assert tried[0][1] is False and tried[-1][1] is True
