"""Rate limits wait, they do not fail: a 429 with a long Retry-After defers a batch request
to when the window opens (never to a cheaper model, never to a failure) while its deadline
allows; a realtime request falls back to an equal-or-cheaper model or fails at once saying
why. Through the tier worker's real code path, against a scripted model server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, requests, results
from tierline.router.learned.labels import build_prompt
from tierline.router.live.absorber import Limits, scope_key
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime

ANSWERS = {"sim-nano": "Hmm, hard to say.", "sim-mid": "refund", "sim-frontier": "card_lost"}
LIMITED: set[str] = set()  # models answering 429 with Retry-After: 30
CALLS: dict[str, int] = {}
LABELS = ["refund", "card_lost", "transfer"]


def _reply(model: str, _asked: str) -> tuple[Any, ...]:
    CALLS[model] = CALLS.get(model, 0) + 1
    if model in LIMITED:
        return 429, {"error": {"message": "rate limited"}}, {"retry-after": "30"}
    return 200, completion(ANSWERS[model])


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    LIMITED.clear()
    CALLS.clear()
    yield
    LIMITED.clear()


def _runtime(tmp_path: Path, url: str, strategy: dict[str, Any], first_tier: str = "t1"
             ) -> Runtime:
    data = demo_policy(strategy)
    data["classifier"]["band_tiers"] = dict.fromkeys(("low", "mid", "high"), first_tier)
    return runtime(tmp_path, url, data)


def _ended(rt: Runtime) -> list[tuple[str, str | None, str | None]]:
    with rt.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(results.c.status, results.c.model, results.c.error))]


def test_a_429_with_a_long_retry_after_defers_a_batch_request_until_the_window_opens(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, ["what is the capital of Spain?"])
    assert outcome.finished == 0 and len(outcome.deferred) == 1
    assert outcome.retry_after_s >= 30  # the window the provider named
    assert _ended(rt) == [] and "sim-nano" not in CALLS  # no failure, no cheaper stand-in
    LIMITED.clear()  # the window opened
    again = execute.execute(rt, outcome.deferred, resumed=True)
    assert again.finished == 1
    assert _ended(rt) == [("ok", "sim-mid", None)]
    with rt.engine.connect() as conn:
        tried = conn.execute(select(attempts.c.model, attempts.c.ok)
                             .order_by(attempts.c.seq)).all()
        assert reconcile(conn).balanced
    assert [tuple(t) for t in tried] == [("sim-mid", False), ("sim-mid", True)]


def test_a_realtime_request_falls_back_to_a_cheaper_model_instead_of_waiting(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, [{"prompt": "hi there", "lane": "realtime"}])
    assert outcome.deferred == []
    assert _ended(rt) == [("ok", "sim-nano", None)]


def test_a_realtime_request_with_nowhere_to_go_fails_at_once_naming_the_rate_limit(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    LIMITED.update(("sim-mid", "sim-nano"))
    [outcome] = route_here(rt, [{"prompt": "hi there", "lane": "realtime"}])
    assert outcome.deferred == []
    [(status, _, error)] = _ended(rt)
    assert status == "failed" and error is not None and error.startswith("RateLimited")


def test_a_batch_request_whose_deadline_comes_before_the_window_falls_back(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, [{"prompt": "hi there", "lane": "batch",
                                 "latency_budget_s": 10}])
    assert outcome.deferred == []
    assert _ended(rt) == [("ok", "sim-nano", None)]


def test_a_cascade_rate_limited_mid_climb_waits_and_climbs_on_from_what_it_paid_for(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  first_tier="t0")
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, [build_prompt("where is my money", LABELS)])
    assert len(outcome.deferred) == 1 and outcome.retry_after_s >= 30
    LIMITED.clear()
    assert execute.execute(rt, outcome.deferred, resumed=True).finished == 1
    assert _ended(rt) == [("ok", "sim-mid", None)]
    assert CALLS == {"sim-nano": 1, "sim-mid": 2}  # the cheap answer was not bought twice
    with rt.engine.connect() as conn:
        assert reconcile(conn).balanced


def test_a_request_whose_deadline_passed_while_it_waited_ends_expired_saying_when(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "single"})
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, ["what is the capital of Spain?"])
    with rt.engine.begin() as conn:  # its deadline passes while it waits
        conn.execute(requests.update().values(deadline_at=time.time() - 1))
    LIMITED.clear()
    assert execute.execute(rt, outcome.deferred, resumed=True).finished == 1
    [(status, _, error)] = _ended(rt)
    assert status == "expired" and error is not None
    assert error.startswith("Expired: deadline passed at ") and "TooSlow" not in error
    with rt.engine.connect() as conn:
        assert conn.execute(select(requests.c.status)).scalar_one() == "expired"
        assert reconcile(conn).balanced


def test_a_full_budget_that_opens_only_after_the_deadline_falls_back_instead_of_waiting(
        tmp_path: Path, models_url: str) -> None:
    data = demo_policy({"kind": "single"})
    data["classifier"]["band_tiers"] = dict.fromkeys(("low", "mid", "high"), "t1")
    data["models"]["sim-mid"]["limits"] = {"requests_per_minute": 1}
    rt = runtime(tmp_path, models_url, data)
    rt.absorber.reserve_many(scope_key("sim-mid", None), Limits.from_model_limits(
        rt.policy.models["sim-mid"].limits), [1])  # this minute's one call is taken
    [outcome] = route_here(rt, [{"prompt": "hi there", "lane": "realtime"}])
    assert outcome.deferred == []  # a minute's wait is past a 10 s budget
    assert _ended(rt) == [("ok", "sim-nano", None)]
