"""Rate limits on the learned path wait as on every other: a learned cascade that paid for
answers and then meets a 429 on a standard or batch request waits for the window while its
deadline allows, and climbs on from what it paid for when it comes back; a realtime request
serves the call by an equal-or-cheaper model, or fails at once naming the rate limit. A
request deferred for any reason (a rate limit, the lease's share for rounds) keeps what it
paid for on its attempt rows.
Through the tier worker's real code path, against a scripted model server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests import recorded
from tests.conftest import publish_nowhere
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.producer.client import Client
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, results
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.training import train_routing
from tierline.router.live.absorber import Limits, scope_key
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime

ANSWERS = {"sim-nano": "Hmm, hard to say.", "sim-mid": "refund", "sim-alt": "refund",
           "sim-frontier": "card_lost"}
LIMITED: set[str] = set()  # models answering 429 with Retry-After: 30, or "model:prompt"
CALLS: dict[str, int] = {}
CALLED: list[str] = []  # the models called, in order
DOWN: set[str] = set()  # models refusing every call (400: never retried)


def _reply(model: str, asked: str) -> tuple[Any, ...]:
    CALLS[model] = CALLS.get(model, 0) + 1
    CALLED.append(model)
    if model in DOWN:
        return 400, {"error": {"message": "down"}}
    if model in LIMITED or f"{model}:{asked}" in LIMITED:
        return 429, {"error": {"message": "rate limited"}}, {"retry-after": "30"}
    return 200, completion(ANSWERS[model], tokens_out=20)


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    accuracy = {"sim-nano": 0.3, "sim-mid": 0.6, "sim-alt": 0.6, "sim-frontier": 0.95}
    prices = {"sim-nano": (0.1, 0.4), "sim-mid": (0.8, 3.2), "sim-alt": (0.8, 3.2),
              "sim-frontier": (5.0, 20.0)}
    path = tmp_path_factory.mktemp("bundle") / "routing"
    save_bundle(bundle_of(train_routing(recorded.items(120, accuracy), prices)), path)
    return path


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    LIMITED.clear()
    DOWN.clear()
    CALLS.clear()
    CALLED.clear()
    yield
    LIMITED.clear()
    DOWN.clear()


def _runtime(tmp_path: Path, url: str, bundle: Path, frontier_per_minute: int | None = None
             ) -> Runtime:
    """A learned cascade (nano, then mid, then frontier: the climb this test's answers make),
    with a second model in the middle tier for realtime to fall back to."""
    data = demo_policy({"kind": "cascade", "confidence_bar": 0.7,
                        "options": {"bundle": str(bundle)}})
    data["models"]["sim-alt"] = dict(data["models"]["sim-mid"])
    data["tiers"]["t1"] = ["sim-mid", "sim-alt"]
    if frontier_per_minute is not None:
        data["models"]["sim-frontier"]["limits"] = {"requests_per_minute": frontier_per_minute}
    return runtime(tmp_path, url, data)


def _tried(rt: Runtime) -> list[tuple[str, bool]]:
    with rt.engine.connect() as conn:
        assert reconcile(conn).balanced
        return [(m, ok) for m, ok in conn.execute(
            select(attempts.c.model, attempts.c.ok).order_by(attempts.c.seq))]


def _ended(rt: Runtime) -> list[tuple[str, str | None, str | None]]:
    with rt.engine.connect() as conn:
        return [(s, m, e) for s, m, e in conn.execute(
            select(results.c.status, results.c.model, results.c.error))]


@pytest.mark.parametrize("lane", ["batch", "standard"])
def test_a_learned_request_that_paid_waits_for_a_429s_window_and_climbs_on_from_what_it_paid(
        tmp_path: Path, models_url: str, bundle_path: Path, lane: str) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    LIMITED.add("sim-frontier")
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": lane}])
    assert len(outcome.deferred) == 1 and outcome.retry_after_s >= 30
    assert _ended(rt) == []  # not its best answer so far: it waits
    LIMITED.clear()  # the window opened
    assert execute.execute(rt, outcome.deferred, resumed=True).finished == 1
    assert _ended(rt) == [("ok", "sim-frontier", None)]
    assert _tried(rt) == [("sim-nano", True), ("sim-mid", True), ("sim-frontier", False),
                          ("sim-frontier", True)]
    assert CALLS == {"sim-nano": 1, "sim-mid": 1, "sim-frontier": 2}  # none bought twice


def test_a_learned_request_whose_deadline_comes_before_the_window_falls_back_instead(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    LIMITED.add("sim-frontier")
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "batch",
                                 "latency_budget_s": 10}])
    assert outcome.deferred == []
    [(status, model, _)] = _ended(rt)
    assert status == "ok" and model in ("sim-nano", "sim-mid", "sim-alt")
    # The frontier's call served by the middle tier's other model; none paid twice.
    assert CALLS == {"sim-nano": 1, "sim-mid": 1, "sim-frontier": 1, "sim-alt": 1}


def test_a_realtime_learned_request_falls_back_to_an_equal_or_cheaper_model_on_a_429(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    LIMITED.add("sim-mid")
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "realtime",
                                 "latency_budget_s": 60}])
    assert outcome.deferred == []
    assert _ended(rt) == [("ok", "sim-frontier", None)]
    assert _tried(rt) == [("sim-nano", True), ("sim-mid", False), ("sim-alt", True),
                          ("sim-frontier", True)]


def test_a_realtime_learned_request_with_nowhere_to_go_fails_at_once_naming_the_rate_limit(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    LIMITED.add("sim-nano")  # its first call, and the cheapest tier has no other model
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "realtime",
                                 "latency_budget_s": 60}])
    assert outcome.deferred == []
    [(status, _, error)] = _ended(rt)
    assert status == "failed" and error is not None and error.startswith("RateLimited")
    assert CALLS == {"sim-nano": 1}


def test_a_learned_request_that_paid_waits_for_a_full_budget_and_keeps_its_answers(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path, frontier_per_minute=1)
    rt.absorber.reserve_many(scope_key("sim-frontier", None), Limits.from_model_limits(
        rt.policy.models["sim-frontier"].limits), [1])  # this minute's one call is taken
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "batch"}])
    assert len(outcome.deferred) == 1 and outcome.retry_after_s > 0
    assert _ended(rt) == [] and "sim-frontier" not in CALLS
    with rt.engine.connect() as conn:  # what it paid for, kept for when it comes back
        kept = conn.execute(select(attempts.c.model, attempts.c.content)
                            .order_by(attempts.c.seq)).all()
    assert [(m, c) for m, c in kept] == [("sim-nano", "Hmm, hard to say."), ("sim-mid", "refund")]


def _kept(rt: Runtime) -> list[tuple[str, str | None]]:
    with rt.engine.connect() as conn:
        return [(m, c) for m, c in conn.execute(
            select(attempts.c.model, attempts.c.content).where(attempts.c.ok)
            .order_by(attempts.c.request_id, attempts.c.seq))]


def test_a_request_deferred_mid_bundle_keeps_its_answers_while_the_others_climb_on(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    LIMITED.add("sim-mid:question 4")  # only this request's second call meets a 429
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "batch"},
                                {"prompt": "question 6", "lane": "batch"}])
    assert len(outcome.deferred) == 1 and outcome.finished == 1
    [waiting] = outcome.deferred
    with rt.engine.connect() as conn:
        kept = conn.execute(select(attempts.c.model, attempts.c.content).where(
            attempts.c.request_id == waiting, attempts.c.ok)).all()
    assert [(m, c) for m, c in kept] == [("sim-nano", "Hmm, hard to say.")]


def test_past_the_leases_share_for_rounds_a_learned_request_goes_on_in_a_new_message(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    client = Client(rt, publish=publish_nowhere)
    ids = client.submit_many([{"prompt": "question 4", "lane": "batch"}]).request_ids
    bundles: list[tuple[list[str], bool]] = []
    routing.route(rt, ids, lambda bundle, _t, _l, resumed: bundles.append((bundle, resumed)))
    [(bundle, resumed)] = bundles
    t0 = time.time()
    # The clock stands still until the first call is made, then is far past the rounds' share.
    outcome = execute.execute(rt, bundle, lambda: t0 + (100.0 if CALLED else 0.0),
                              resumed=resumed)
    assert outcome.deferred == ids and _ended(rt) == []
    assert _kept(rt) == [("sim-nano", "Hmm, hard to say.")]
    assert execute.execute(rt, ids, resumed=True).finished == 1  # it climbs on from there
    assert _ended(rt) == [("ok", "sim-frontier", None)]
    assert CALLS == {"sim-nano": 1, "sim-mid": 1, "sim-frontier": 1}


def test_a_learned_call_that_fails_is_served_by_its_fallback_chain_as_every_strategys_is(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _runtime(tmp_path, models_url, bundle_path)
    DOWN.add("sim-mid")
    [outcome] = route_here(rt, [{"prompt": "question 4", "lane": "batch"}])
    assert outcome.deferred == []
    assert _ended(rt) == [("ok", "sim-frontier", None)]
    # The middle tier's other model answers for it, and the climb goes on from there.
    assert _tried(rt) == [("sim-nano", True), ("sim-mid", False), ("sim-alt", True),
                          ("sim-frontier", True)]
