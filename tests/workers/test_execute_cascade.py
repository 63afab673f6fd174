"""Live cascades in the tier worker: a weak answer climbs a tier; every paid call is kept,
and a climb deferred for budget goes on from the answers it paid for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.workers.scripted import (
    a_minute_later,
    completion,
    demo_policy,
    route_here,
    runtime,
    serve,
)
from tierline.record import jobs
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, charges, requests, results
from tierline.router.learned.labels import build_prompt
from tierline.router.live.absorber import Limits, scope_key
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime, install
from tierline.workers.tasks import call_models

# What each model says, whatever it is asked: the cheap one hedges, the others answer.
ANSWERS = {"sim-nano": "Hmm, hard to say.", "sim-mid": "refund", "sim-frontier": "card_lost"}
BROKEN: set[str] = set()
CALLS: dict[str, int] = {}


def _reply(model: str, _asked: str) -> tuple[int, dict[str, object]]:
    CALLS[model] = CALLS.get(model, 0) + 1
    if model in BROKEN:
        return 503, {"error": {"message": "down"}}
    return 200, completion(ANSWERS[model])


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


def _runtime(tmp_path: Path, url: str, strategy: dict[str, object],
             limits: dict[str, dict[str, int]] | None = None,
             database_url: str | None = None) -> Runtime:
    data = demo_policy(strategy)
    for model, model_limits in (limits or {}).items():
        data["models"][model]["limits"] = model_limits
    return runtime(tmp_path, url, data, database_url)


def _run(tmp_path: Path, url: str, prompts: list[str], strategy: dict[str, object]) -> Runtime:
    rt = _runtime(tmp_path, url, strategy)
    route_here(rt, prompts)
    return rt


def _rows(rt: Runtime) -> tuple[list[tuple[str, str]], list[tuple[str, bool]], int]:
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.model, results.c.content)).all()
        tried = conn.execute(select(attempts.c.model, attempts.c.ok)
                             .order_by(attempts.c.seq)).all()
        paid = len(conn.execute(select(charges.c.attempt_id)).all())
    return [tuple(r) for r in ended], [tuple(a) for a in tried], paid  # type: ignore[misc]


LABELS = ["refund", "card_lost", "transfer"]


def test_a_hedging_answer_escalates_to_the_next_tier(tmp_path: Path, models_url: str) -> None:
    rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
              {"kind": "cascade", "confidence_bar": 0.7})
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-mid", "refund")]
    assert tried == [("sim-nano", True), ("sim-mid", True)]  # the climb, both paid
    assert paid == 2


def test_without_a_cascade_the_first_answer_stands(tmp_path: Path, models_url: str) -> None:
    rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
              {"kind": "single"})
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-nano", "Hmm, hard to say.")] and paid == 1


def test_free_text_that_cannot_be_judged_is_not_escalated(tmp_path: Path, models_url: str
                                                           ) -> None:
    rt = _run(tmp_path, models_url, ["write me a haiku about autumn"],
              {"kind": "cascade", "confidence_bar": 0.7})
    ended, tried, _ = _rows(rt)
    assert [m for m, _ in tried] == ["sim-nano"]


def test_when_the_tier_above_is_down_the_best_answer_so_far_is_kept(
        tmp_path: Path, models_url: str) -> None:
    BROKEN.add("sim-mid")
    try:
        rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
                  {"kind": "cascade", "confidence_bar": 0.7})
    finally:
        BROKEN.clear()
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-nano", "Hmm, hard to say.")]
    assert tried == [("sim-nano", True), ("sim-mid", False)] and paid == 1


@pytest.mark.parametrize("back_by", ["countdown", "resume"])
def test_a_climb_deferred_for_budget_goes_on_from_the_answer_it_paid_for(
        tmp_path: Path, models_url: str, back_by: str) -> None:
    one_a_minute = {"requests_per_minute": 1}
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  limits={"sim-mid": one_a_minute})
    rt.absorber.reserve_many(scope_key("sim-mid", None), Limits.from_model_limits(
        rt.policy.models["sim-mid"].limits), [1])  # this minute's one call is taken
    [outcome] = route_here(rt, [build_prompt("where is my money", LABELS)])
    assert outcome.finished == 0 and len(outcome.deferred) == 1  # nano paid, the climb waits
    rt = a_minute_later(rt)
    if back_by == "countdown":  # the tier worker's own re-queue marks the bundle resumed
        again = [execute.execute(rt, outcome.deferred, resumed=True)]
    else:  # `tierline resume` routes it again: the router sees its stored decision
        again = []
        routing.route(rt, outcome.deferred, lambda ids, _t, _l, resumed: again.append(
            execute.execute(rt, ids, resumed=resumed)))
    assert [o.finished for o in again] == [1]
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-mid", "refund")]
    # The cheap answer kept at the deferral is judged again rather than bought again: the
    # climb goes on at sim-mid, numbered after the paid call.
    assert tried == [("sim-nano", True), ("sim-mid", True)]
    assert paid == 2
    with rt.engine.connect() as conn:  # the result counts the call paid before the deferral
        assert conn.execute(select(results.c.attempts)).scalar_one() == 2
        assert reconcile(conn).balanced


def test_only_a_climb_deferred_after_paid_calls_keeps_their_answers(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  limits={"sim-mid": {"requests_per_minute": 1}}, database_url=database_url)
    # Both labelled prompts climb to sim-mid, which takes one of them this minute; the
    # haiku's answer cannot be judged and stands.
    [outcome] = route_here(rt, [build_prompt("where is my money", LABELS),
                                build_prompt("my card is gone", LABELS),
                                "write me a haiku about autumn"])
    assert outcome.finished == 2
    [waiting] = outcome.deferred

    def kept() -> dict[str, list[tuple[str, str | None, str | None]]]:
        with rt.engine.connect() as conn:
            rows = conn.execute(select(attempts.c.request_id, attempts.c.model,
                                       attempts.c.content, attempts.c.finish_reason)
                                .order_by(attempts.c.seq)).all()
        by_request: dict[str, list[tuple[str, str | None, str | None]]] = {}
        for request_id, model, content, finish_reason in rows:
            by_request.setdefault(request_id, []).append((model, content, finish_reason))
        return by_request

    first = kept()
    assert first.pop(waiting) == [("sim-nano", "Hmm, hard to say.", "stop")]
    assert sorted(first.values()) == [
        [("sim-nano", None, None)], [("sim-nano", None, None), ("sim-mid", None, None)]]

    rt = a_minute_later(rt)
    assert execute.execute(rt, [waiting], resumed=True).finished == 1
    # once the request has its result, the kept answer is cleared
    assert kept()[waiting] == [("sim-nano", None, None), ("sim-mid", None, None)]
    with rt.engine.connect() as conn:
        assert conn.execute(select(results.c.model, results.c.content)
                            .where(results.c.request_id == waiting)).one() == ("sim-mid",
                                                                                "refund")
        assert reconcile(conn).balanced


def test_a_deferred_request_whose_job_is_cancelled_keeps_its_spend_not_its_answers(
        tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  limits={"sim-mid": {"requests_per_minute": 1}})
    rt.absorber.reserve_many(scope_key("sim-mid", None), Limits.from_model_limits(
        rt.policy.models["sim-mid"].limits), [1])
    [outcome] = route_here(rt, [build_prompt("where is my money", LABELS)])
    [waiting] = outcome.deferred

    def kept() -> list[str | None]:
        with rt.engine.connect() as conn:
            return list(conn.execute(select(attempts.c.content)
                                     .where(attempts.c.request_id == waiting)).scalars())

    assert kept() == ["Hmm, hard to say."]
    with rt.engine.begin() as conn:
        job_id = conn.execute(select(requests.c.job_id)
                              .where(requests.c.id == waiting)).scalar_one()
        assert jobs.halt(conn, job_id, "cancelled", time.time()) == 1
    assert kept() == [None]  # the paid attempt itself stays on record
    with rt.engine.connect() as conn:  # and its result counts what was paid
        status, attempts_paid, usd = conn.execute(select(
            results.c.status, results.c.attempts, results.c.usd)
            .where(results.c.request_id == waiting)).one()
        assert (status, attempts_paid) == ("cancelled", 1) and usd > 0
        assert reconcile(conn).balanced


def test_a_redelivered_bundle_goes_on_from_what_its_dead_worker_committed(
        tmp_path: Path, models_url: str) -> None:
    """The worker committed a paid call and a deferral, then died before the ack: the broker
    hands the original message (not resumed) out again, marked redelivered."""
    rt = _runtime(tmp_path, models_url, {"kind": "cascade", "confidence_bar": 0.7},
                  limits={"sim-mid": {"requests_per_minute": 1}})
    rt.absorber.reserve_many(scope_key("sim-mid", None), Limits.from_model_limits(
        rt.policy.models["sim-mid"].limits), [1])
    [outcome] = route_here(rt, [build_prompt("where is my money", LABELS)])
    assert outcome.deferred
    rt = a_minute_later(rt)
    CALLS.clear()
    install(rt)
    call_models.push_request(delivery_info={"redelivered": True, "routing_key": "tier.t0"})
    try:
        assert call_models(outcome.deferred) == 1
    finally:
        call_models.pop_request()
    assert CALLS == {"sim-mid": 1}  # the cheap answer was not bought again
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-mid", "refund")]
    assert tried == [("sim-nano", True), ("sim-mid", True)] and paid == 2
    with rt.engine.connect() as conn:
        assert reconcile(conn).balanced
