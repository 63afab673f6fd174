"""Parallel and hybrid without a bundle, in the tier worker: several models asked in one
round over real HTTP, their answers voted on (or picked by an evaluator), every call an
attempt with its charge, and the vote and its cost multiplier in the result's detail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tierline.record.schema import attempts, charges, results
from tierline.router.learned.labels import build_prompt
from tierline.router.live.absorber import Limits, scope_key
from tierline.router.strategies.aggregation import EVALUATOR_INSTRUCTION
from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.server import start
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime

LABELS = ["refund", "card_lost", "transfer"]
PROMPT = build_prompt("where is my money", LABELS)
PRICES = {"sim-nano": (0.10, 0.40), "sim-mid": (0.80, 3.20), "sim-frontier": (5.00, 20.00),
          "sim-check-a": (2.00, 8.00), "sim-check-b": (1.00, 4.00)}
TOKENS_IN, TOKENS_OUT = 40, 3  # what the test server reports for every call
# What each model says, whatever it is asked; each test sets its own.
ANSWERS: dict[str, str] = {}
EVALUATOR_REPLY = {"text": ""}
BROKEN: set[str] = set()
LIMITED: set[str] = set()  # models answering 429, Retry-After 30 s


def _reply(model: str, asked: str) -> tuple[int, dict[str, Any]]:
    if model in BROKEN:
        return 400, {"error": {"message": "down"}}  # rejected: never retried
    if model in LIMITED:
        return 429, {"error": {"message": "rate limited"}}, {"retry-after": "30"}
    text = EVALUATOR_REPLY["text"] if asked.startswith(EVALUATOR_INSTRUCTION) else ANSWERS[model]
    return 200, completion(text, TOKENS_IN, TOKENS_OUT)


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_models() -> Iterator[None]:
    yield
    ANSWERS.clear()
    BROKEN.clear()
    LIMITED.clear()
    EVALUATOR_REPLY["text"] = ""


def _policy(strategy: dict[str, Any], limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo policy with two more models in the top tier, to verify with."""
    data = demo_policy(strategy)
    data["tiers"] = {"t0": ["sim-nano"], "t1": ["sim-mid"],
                     "t2": ["sim-frontier", "sim-check-a", "sim-check-b"]}
    data["models"] = {m: {"provider": "openai", "base_url_env": "TIERLINE_SIM_URL",
                          "usd_per_1m_input": i, "usd_per_1m_output": o}
                      for m, (i, o) in PRICES.items()}
    for model, limit in (limits or {}).items():
        data["models"][model]["limits"] = limit
    return data


def _run(tmp_path: Path, url: str, strategy: dict[str, Any], prompts: tuple[str, ...] = (PROMPT,),
         limits: dict[str, Any] | None = None, deferred: list[str] | None = None) -> Runtime:
    rt = runtime(tmp_path, url, _policy(strategy, limits))
    outcomes = route_here(rt, list(prompts))
    if deferred is not None:
        deferred.extend(rid for o in outcomes for rid in o.deferred)
    return rt


def _rows(rt: Runtime) -> tuple[Any, list[tuple[str, bool]], int]:
    with rt.engine.connect() as conn:
        (ended,) = conn.execute(select(results.c.status, results.c.model, results.c.content,
                                       results.c.error, results.c.usd, results.c.detail)).all()
        tried = conn.execute(select(attempts.c.model, attempts.c.ok)
                             .order_by(attempts.c.seq)).all()
        paid = len(conn.execute(select(charges.c.attempt_id)).all())
    return ended, [(m, ok) for m, ok in tried], paid


def _usd(model: str) -> float:
    usd_in, usd_out = PRICES[model]
    return (TOKENS_IN * usd_in + TOKENS_OUT * usd_out) / 1e6


def test_parallel_vote_takes_the_majority_and_records_the_cost_multiplier(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-mid": "Refund.", "sim-frontier": "card_lost"})
    rt = _run(tmp_path, models_url, {"kind": "parallel"})
    ended, tried, paid = _rows(rt)
    # Every tier's preferred model, asked in one round, the priciest first; each one paid.
    assert tried == [("sim-frontier", True), ("sim-mid", True), ("sim-nano", True)]
    assert paid == 3
    assert (ended.status, ended.model, ended.content) == ("ok", "sim-mid", "Refund.")
    detail = ended.detail
    assert detail["strategy"] == "parallel" and detail["aggregate"] == "vote"
    assert detail["models"] == ["sim-nano", "sim-mid", "sim-frontier"]
    assert detail["votes"] == {"card_lost": ["sim-frontier"], "refund": ["sim-mid", "sim-nano"]}
    assert detail["decided_by"] == "majority" and detail["answer"] == "refund"
    assert detail["chosen_attempt"] == 1
    total = sum(_usd(m) for m in ("sim-nano", "sim-mid", "sim-frontier"))
    assert float(ended.usd) == pytest.approx(total)
    assert detail["cost_multiplier"] == pytest.approx(total / _usd("sim-mid"), rel=1e-3)


def test_a_tie_goes_to_the_pricier_model(tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-check-b": "transfer"})
    rt = _run(tmp_path, models_url,
              {"kind": "parallel", "options": {"models": ["sim-nano", "sim-check-b"]}})
    ended, tried, _ = _rows(rt)
    assert (ended.model, ended.content, ended.detail["decided_by"]) == (
        "sim-check-b", "transfer", "tie")
    assert sorted(m for m, _ in tried) == ["sim-check-b", "sim-nano"]


def test_a_failed_model_is_left_out_of_the_vote(tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "transfer", "sim-mid": "card_lost"})
    BROKEN.add("sim-frontier")
    rt = _run(tmp_path, models_url, {"kind": "parallel"})
    ended, tried, paid = _rows(rt)
    assert tried == [("sim-frontier", False), ("sim-mid", True), ("sim-nano", True)]
    assert paid == 2  # the failed call is recorded, not charged
    assert (ended.status, ended.model, ended.content) == ("ok", "sim-mid", "card_lost")
    assert ended.detail["decided_by"] == "tie"
    assert "Rejected" in ended.detail["failed"]["sim-frontier"]
    total = _usd("sim-mid") + _usd("sim-nano")
    assert ended.detail["cost_multiplier"] == pytest.approx(total / _usd("sim-mid"), rel=1e-3)


def test_a_rate_limited_panel_member_makes_a_batch_request_wait_keeping_the_others_answers(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-mid": "refund", "sim-frontier": "card_lost"})
    LIMITED.add("sim-nano")
    deferred: list[str] = []
    rt = _run(tmp_path, models_url, {"kind": "parallel"}, deferred=deferred)
    assert len(deferred) == 1  # routed as batch: it waits for the window, it does not vote
    with rt.engine.connect() as conn:
        assert conn.execute(select(results.c.request_id)).all() == []
        kept = conn.execute(select(attempts.c.model, attempts.c.content)
                            .order_by(attempts.c.seq)).all()
    assert [tuple(k) for k in kept] == [("sim-frontier", "card_lost"), ("sim-mid", "refund"),
                                        ("sim-nano", None)]
    LIMITED.clear()  # the window opened: only the rate-limited member is asked again
    rt = a_minute_later(rt)
    assert execute.execute(rt, deferred, resumed=True).finished == 1
    ended, tried, paid = _rows(rt)
    assert (ended.status, ended.content, ended.detail["decided_by"]) == ("ok", "refund",
                                                                         "majority")
    assert [m for m, _ in tried] == ["sim-frontier", "sim-mid", "sim-nano", "sim-nano"]
    assert paid == 3


def test_when_the_whole_panel_fails_the_lead_model_falls_back_along_its_tier(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-check-a": "refund"})
    BROKEN.update({"sim-nano", "sim-mid", "sim-frontier"})
    rt = _run(tmp_path, models_url, {"kind": "parallel"})
    ended, tried, _ = _rows(rt)
    assert tried == [("sim-frontier", False), ("sim-mid", False), ("sim-nano", False),
                     ("sim-check-a", True)]
    assert (ended.status, ended.model, ended.content) == ("ok", "sim-check-a", "refund")
    assert set(ended.detail["failed"]) == {"sim-nano", "sim-mid", "sim-frontier"}
    assert ended.detail["cost_multiplier"] == pytest.approx(1.0)


def test_when_nothing_answers_the_request_fails_with_every_error(
        tmp_path: Path, models_url: str) -> None:
    BROKEN.update({"sim-nano", "sim-mid"})
    rt = _run(tmp_path, models_url,
              {"kind": "parallel", "options": {"models": ["sim-nano", "sim-mid"]}})
    ended, tried, paid = _rows(rt)
    assert ended.status == "failed" and paid == 0
    assert ended.error.startswith("no model of the panel answered: sim-mid: Rejected")
    assert "sim-nano: Rejected" in ended.error


def test_an_evaluator_reply_naming_no_response_leaves_the_vote_standing(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-mid": "refund", "sim-frontier": "card_lost"})
    EVALUATOR_REPLY["text"] = "They all look reasonable to me."
    rt = _run(tmp_path, models_url, {"kind": "parallel", "options": {
        "aggregate": "evaluator", "evaluator": "sim-check-a"}})
    ended, tried, paid = _rows(rt)
    assert tried[-1] == ("sim-check-a", True) and len(tried) == 4 and paid == 4
    assert (ended.model, ended.content) == ("sim-mid", "refund")
    evaluator = ended.detail["evaluator"]
    assert evaluator["model"] == "sim-check-a" and "pick" not in evaluator
    assert "names no single response: the vote stands" in evaluator["fallback"]
    assert ended.detail["decided_by"] == "majority"
    total = sum(_usd(m) for m in ("sim-nano", "sim-mid", "sim-frontier", "sim-check-a"))
    assert ended.detail["cost_multiplier"] == pytest.approx(total / _usd("sim-mid"), rel=1e-3)


def test_the_evaluator_can_overrule_the_vote(tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-mid": "refund", "sim-frontier": "card_lost"})
    EVALUATOR_REPLY["text"] = "Response 1"  # the panel's first: sim-frontier
    rt = _run(tmp_path, models_url, {"kind": "parallel", "options": {
        "aggregate": "evaluator", "evaluator": "sim-check-a"}})
    ended, _, _ = _rows(rt)
    assert (ended.model, ended.content) == ("sim-frontier", "card_lost")
    assert ended.detail["decided_by"] == "evaluator" and ended.detail["evaluator"]["pick"] == 1
    assert ended.detail["answer"] == "card_lost"  # the pick's answer, not the vote's
    assert ended.detail["chosen_attempt"] == 0


def test_a_failed_evaluator_leaves_the_vote_standing(tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund", "sim-mid": "refund", "sim-frontier": "card_lost"})
    BROKEN.add("sim-check-a")
    rt = _run(tmp_path, models_url, {"kind": "parallel", "options": {
        "aggregate": "evaluator", "evaluator": "sim-check-a"}})
    ended, tried, _ = _rows(rt)
    assert tried[-1] == ("sim-check-a", False)
    assert (ended.model, ended.content) == ("sim-mid", "refund")
    assert "the evaluator failed (Rejected" in ended.detail["evaluator"]["fallback"]


def test_hybrid_verifies_at_the_last_tier_by_default(tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "Hmm, hard to say.", "sim-mid": "not sure",
                    "sim-frontier": "card_lost", "sim-check-a": "refund", "sim-check-b": "refund"})
    rt = _run(tmp_path, models_url, {"kind": "hybrid", "confidence_bar": 0.7,
                                     "options": {"verify_with": ["sim-check-a", "sim-check-b"]}})
    ended, tried, paid = _rows(rt)
    # The cascade climbs one model at a time, then the top tier is asked with its verifiers.
    assert tried == [("sim-nano", True), ("sim-mid", True), ("sim-frontier", True),
                     ("sim-check-a", True), ("sim-check-b", True)]
    assert paid == 5
    assert (ended.model, ended.content) == ("sim-check-a", "refund")  # outvoted the lead
    detail = ended.detail
    assert detail["strategy"] == "hybrid" and detail["verified_at"] == "t2"
    assert detail["votes"] == {"card_lost": ["sim-frontier"],
                               "refund": ["sim-check-a", "sim-check-b"]}
    assert detail["decided_by"] == "majority" and detail["chosen_attempt"] == 3
    total = sum(_usd(m) for m in PRICES)
    assert detail["cost_multiplier"] == pytest.approx(total / _usd("sim-check-a"), rel=1e-3)


def test_hybrid_verifies_at_the_tier_the_policy_marks_critical(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "Hmm, hard to say.", "sim-mid": "transfer",
                    "sim-check-a": "refund", "sim-check-b": "refund"})
    rt = _run(tmp_path, models_url, {"kind": "hybrid", "confidence_bar": 0.7, "options": {
        "verify_with": ["sim-check-a", "sim-check-b"], "critical_tier": "t1"}})
    ended, tried, _ = _rows(rt)
    # The vote's answer is a clean label: the cascade stops there, the top tier never asked.
    assert tried == [("sim-nano", True), ("sim-mid", True), ("sim-check-a", True),
                     ("sim-check-b", True)]
    assert (ended.model, ended.content) == ("sim-check-a", "refund")
    assert ended.detail["verified_at"] == "t1"


def test_a_cascade_that_stops_below_the_critical_tier_asks_no_panel(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "refund"})
    rt = _run(tmp_path, models_url, {"kind": "hybrid", "confidence_bar": 0.7,
                                     "options": {"verify_with": ["sim-check-a"]}})
    ended, tried, _ = _rows(rt)
    assert tried == [("sim-nano", True)]
    assert ended.detail is None


# -- budgets --------------------------------------------------------------------------------
TWO = (PROMPT, build_prompt("my card never came", LABELS))
ONE_A_MINUTE = {"requests_per_minute": 1}


def test_a_verifier_without_budget_is_left_out_of_the_panel(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-frontier": "refund", "sim-check-b": "refund"})
    rt = _run(tmp_path, models_url,
              {"kind": "parallel", "options": {"models": ["sim-frontier", "sim-check-b"]}},
              TWO, limits={"sim-check-b": ONE_A_MINUTE})
    with rt.engine.connect() as conn:
        details = [d for (d,) in conn.execute(select(results.c.detail))]
        asked = conn.execute(select(attempts.c.model)).all()
    assert len(details) == 2  # both answered: nobody waits for a verifier
    assert sorted(m for (m,) in asked) == ["sim-check-b", "sim-frontier", "sim-frontier"]
    assert sorted(d.get("no_budget", []) for d in details) == [[], ["sim-check-b"]]


def test_a_panel_whose_lead_has_no_budget_waits_and_gives_its_verifiers_holds_back(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-frontier": "refund", "sim-check-b": "refund"})
    deferred: list[str] = []
    rt = _run(tmp_path, models_url,
              {"kind": "parallel", "options": {"models": ["sim-frontier", "sim-check-b"]}},
              TWO, limits={"sim-frontier": ONE_A_MINUTE,
                           "sim-check-b": {"tokens_per_day": 1_000_000}}, deferred=deferred)
    with rt.engine.connect() as conn:
        answered = [r for (r,) in conn.execute(select(results.c.request_id))]
        asked = sorted(m for (m,) in conn.execute(select(attempts.c.model)))
    assert len(answered) == 1 and len(deferred) == 1 and deferred[0] not in answered
    assert asked == ["sim-check-b", "sim-frontier"]  # the waiting panel called nobody
    held = rt.absorber.usage(scope_key("sim-check-b", None),
                             Limits.from_model_limits(rt.policy.models["sim-check-b"].limits))
    assert held["in_flight"] == 0 and held["held_tokens"] == 0


def test_a_hybrid_deferred_above_its_panel_reuses_every_answer_it_paid_for(
        tmp_path: Path, models_url: str) -> None:
    ANSWERS.update({"sim-nano": "Hmm, hard to say.", "sim-mid": "Maybe, not sure.",
                    "sim-frontier": "card_lost"})
    deferred: list[str] = []
    # sim-nano answers twice on the way up: as the cascade's first step, then verifying t1.
    rt = _run(tmp_path, models_url, {"kind": "hybrid", "confidence_bar": 0.7, "options": {
        "verify_with": ["sim-nano"], "critical_tier": "t1"}}, TWO,
        limits={"sim-frontier": ONE_A_MINUTE}, deferred=deferred)
    [waiting] = deferred  # the other took this minute's sim-frontier call

    def tried() -> list[tuple[str, bool]]:  # (model, answer kept)
        with rt.engine.connect() as conn:
            return [tuple(t) for t in conn.execute(
                select(attempts.c.model, attempts.c.content.is_not(None))
                .where(attempts.c.request_id == waiting).order_by(attempts.c.seq))]

    assert tried() == [("sim-nano", True), ("sim-mid", True), ("sim-nano", True)]
    rt = a_minute_later(rt)
    assert execute.execute(rt, deferred, resumed=True).finished == 1
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.model, results.c.content)
                             .where(results.c.request_id == waiting)).one()
    # no paid answer was bought again, and the kept ones are cleared with the result
    assert tried() == [("sim-nano", False), ("sim-mid", False), ("sim-nano", False),
                       ("sim-frontier", False)]
    assert tuple(ended) == ("sim-frontier", "card_lost")
    with rt.engine.connect() as conn:  # what it paid before the deferral counts too
        detail, total = conn.execute(select(results.c.detail, results.c.usd)
                                     .where(results.c.request_id == waiting)).one()
        last = conn.execute(select(attempts.c.usd).where(attempts.c.request_id == waiting,
                                                         attempts.c.seq == 3)).scalar_one()
    assert detail["chosen_attempt"] == 3
    assert detail["cost_multiplier"] == round(float(total / last), 4) > 1


# -- the evaluator against the synthetic simulator ---------------------------------------
QUICK = {"ttft_s": 0.0, "per_token_s": 0.0, "jitter_s": 0.0, "cold_start_s": 0.0}


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    fleet = Fleet({m: ModelProfile(**QUICK, accuracy=0.9) for m in PRICES}, seed=3)
    with start(fleet, port=0) as sim:
        yield sim.url


def test_the_simulator_answers_the_evaluator_with_a_response_number(
        tmp_path: Path, sim_url: str) -> None:
    # The evaluator prompt follows the classification convention, so the simulator answers
    # one of its "Labels: 1, 2, 3": a deterministic pick the worker takes.
    rt = _run(tmp_path, sim_url, {"kind": "parallel", "options": {
        "aggregate": "evaluator", "evaluator": "sim-check-a"}})
    ended, tried, paid = _rows(rt)
    assert [m for m, _ in tried] == ["sim-frontier", "sim-mid", "sim-nano", "sim-check-a"]
    assert paid == 4
    detail = ended.detail
    pick = detail["evaluator"]["pick"]
    assert detail["evaluator"]["reply"] == str(pick) and detail["decided_by"] == "evaluator"
    assert detail["chosen_attempt"] == pick - 1
    assert ended.model == tried[pick - 1][0]
