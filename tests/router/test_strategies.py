"""Strategies as step machines: what each asks for next, given what was paid for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from tierline.router.learned.judge import Candidate, Judge, group_candidates
from tierline.router.learned.lookahead import Lookahead
from tierline.router.live.output_budget import (
    QuantizedVariant,
    output_cap_for_band,
    prefer_quantized,
)
from tierline.router.strategies.basic import (
    STRATEGIES,
    BandRoute,
    Cascade,
    LearnedPick,
    Parallel,
    SingleModel,
    TwoModelThreshold,
    pick_model,
    vote,
)
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView
from tierline.router.strategies.value_cascade import ValueCascade

TIERS = ("t0", "t1", "t2")
USD = {"t0": 1.0, "t1": 3.0, "t2": 10.0, "t3": 20.0}


class FixedJudge:
    """Confidence per model; each extra agreeing response adds 0.3."""

    def __init__(self, confidence: Mapping[str, float]) -> None:
        self.confidence = confidence

    def candidates(self, attempts: Sequence[Attempt],
                   router_logits: Mapping[str, float]) -> list[Candidate]:
        out = []
        for group in group_candidates(attempts):
            best = max(group, key=lambda a: self.confidence[a.model])
            conf = min(1.0, self.confidence[best.model] + 0.3 * (len(group) - 1))
            out.append(Candidate(group[0].answer, best.model, tuple(a.model for a in group), conf))
        return sorted(out, key=lambda c: -c.confidence)


def view(**p: float) -> RequestView:
    return RequestView("prompt", {m: p.get(m, 0.5) for m in (*TIERS, "t3")})


def drive(strategy, answers: Mapping[str, str | None], request: RequestView | None = None):  # type: ignore[no-untyped-def]
    """Run a strategy to its Accept; return (calls made, accept)."""
    request = request or view()
    attempts: list[Attempt] = []
    calls: list[tuple[str, ...]] = []
    for _ in range(10):
        action = strategy.step(request, attempts)
        if isinstance(action, Accept):
            return calls, action
        calls.append(action.models)
        attempts += [Attempt(m, f"resp {m}", answers[m]) for m in action.models]
    raise AssertionError("no accept")


@pytest.mark.parametrize(
    ("confidence", "answers", "bar", "calls", "answer_from"),
    [
        ({"t0": 0.9, "t1": 0.5, "t2": 0.5}, {"t0": "A", "t1": "B", "t2": "C"}, 0.8,
         [("t0",)], "t0"),
        ({"t0": 0.5, "t1": 0.85, "t2": 0.9}, {"t0": "A", "t1": "B", "t2": "C"}, 0.8,
         [("t0",), ("t1",)], "t1"),
        ({"t0": 0.5, "t1": 0.6, "t2": 0.7}, {"t0": "A", "t1": "B", "t2": "C"}, 0.8,
         [("t0",), ("t1",), ("t2",)], "t2"),
        # two cheap tiers agreeing clear the bar together
        ({"t0": 0.5, "t1": 0.55, "t2": 0.9}, {"t0": "A", "t1": "A", "t2": "C"}, 0.8,
         [("t0",), ("t1",)], "t1"),
    ],
)
def test_cascade_escalates_while_confidence_is_below_the_bar(
    confidence, answers, bar, calls, answer_from  # type: ignore[no-untyped-def]
) -> None:
    made, accept = drive(Cascade(TIERS, FixedJudge(confidence), bar), answers)
    assert made == calls
    assert accept.answer_from == answer_from


@pytest.mark.parametrize("tiers", [("t0", "t1"), ("t0", "t1", "t2"), ("t0", "t1", "t2", "t3")])
def test_cascade_never_climbs_past_the_top_tier(tiers: tuple[str, ...]) -> None:
    low = FixedJudge({m: 0.1 for m in tiers})
    made, accept = drive(Cascade(tiers, low, 0.99), {m: m for m in tiers})
    assert [c[0] for c in made] == list(tiers)
    assert accept.confidence < 0.99


def test_cascade_starts_where_the_learned_router_is_confident_and_skips_weak_tiers() -> None:
    judge = FixedJudge({"t0": 0.1, "t1": 0.1, "t2": 0.1, "t3": 0.1})
    cascade = Cascade(("t0", "t1", "t2", "t3"), judge, 0.9, start_bar=0.6, skip_bar=0.3)
    request = view(t0=0.2, t1=0.7, t2=0.1, t3=0.9)
    made, _ = drive(cascade, {m: "A" for m in USD}, request)
    assert made == [("t1",), ("t3",)]


def test_hybrid_verifies_in_parallel_at_the_critical_step() -> None:
    judge = FixedJudge({"t0": 0.2, "t1": 0.7, "t2": 0.7})
    hybrid = Cascade(("t0", "t2"), judge, 0.9, verify_with=("t1",))
    made, accept = drive(hybrid, {"t0": "A", "t1": "B", "t2": "B"})
    assert made == [("t0",), ("t2", "t1")]
    assert accept.answer == "B" and accept.aggregate


@pytest.mark.parametrize(
    ("answers", "p", "answer", "answer_from"),
    [
        ({"t0": "A", "t1": "A", "t2": "B"}, {}, "A", "t1"),
        # a tie goes to the likelier supporter
        ({"t0": "A", "t1": "B"}, {"t0": 0.9, "t1": 0.4}, "A", "t0"),
        # equally likely: the pricier supporter
        ({"t0": "A", "t1": "B"}, {"t0": 0.5, "t1": 0.5}, "B", "t1"),
        # no extractable answer anywhere: the likeliest model's response
        ({"t0": None, "t1": None}, {"t0": 0.2, "t1": 0.6}, None, "t1"),
        # missing answers do not vote
        ({"t0": None, "t1": None, "t2": "C"}, {}, "C", "t2"),
    ],
)
def test_vote_majority_then_likelihood_then_price(answers, p, answer, answer_from) -> None:  # type: ignore[no-untyped-def]
    attempts = [Attempt(m, "", a) for m, a in answers.items()]
    accept = vote(attempts, {m: p.get(m, 0.5) for m in answers}, USD)
    assert (accept.answer, accept.answer_from) == (answer, answer_from)


def test_parallel_asks_everyone_at_once_then_votes() -> None:
    made, accept = drive(Parallel(("t0", "t1", "t2"), USD), {"t0": "A", "t1": "C", "t2": "C"})
    assert made == [("t0", "t1", "t2")]
    assert accept.answer == "C" and accept.aggregate


@pytest.mark.parametrize(
    ("p", "bar", "weight", "chosen"),
    [
        ({"t0": 0.8, "t1": 0.9, "t2": 0.95}, 0.7, None, "t0"),
        ({"t0": 0.5, "t1": 0.75, "t2": 0.95}, 0.7, None, "t1"),
        ({"t0": 0.5, "t1": 0.6, "t2": 0.65}, 0.7, None, "t2"),
        ({"t0": 0.5, "t1": 0.6, "t2": 0.9}, None, 0.0, "t2"),
        ({"t0": 0.5, "t1": 0.6, "t2": 0.9}, None, 1.0, "t0"),
    ],
)
def test_pick_model_cheapest_clearing_the_bar_or_best_tradeoff(p, bar, weight, chosen) -> None:  # type: ignore[no-untyped-def]
    assert pick_model(TIERS, p, USD, bar, weight) == chosen


def test_single_shot_strategies_make_one_call() -> None:
    answers = {m: "A" for m in USD}
    for strategy, request, model in [
        (SingleModel("t2"), view(), "t2"),
        (LearnedPick(TIERS, USD, bar=0.7), view(t0=0.2, t1=0.8), "t1"),
        (TwoModelThreshold("t0", "t2", 0.5), view(t0=0.6), "t0"),
        (TwoModelThreshold("t0", "t2", 0.5), view(t0=0.4), "t2"),
        (BandRoute({"low": "t0", "mid": "t1", "high": "t2"}),
         RequestView("p", {}, band="high"), "t2"),
    ]:
        made, accept = drive(strategy, answers, request)
        assert made == [(model,)] and accept.answer_from == model


def test_value_cascade_buys_a_call_only_when_worth_its_cost() -> None:
    models = ("t0", "t2")
    # lookahead that always predicts 0.9 after any call
    look = Lookahead(models, np.zeros(5 + 2 + 6 + 2), float(np.log(9)))
    judge = FixedJudge({"t0": 0.5, "t2": 0.9})
    eager = ValueCascade(models, judge, look, USD, min_gain_per_cost=0.1)
    stingy = ValueCascade(models, judge, look, USD, min_gain_per_cost=1.0)
    assert drive(eager, {"t0": "A", "t2": "B"})[0] == [("t0",), ("t2",)]
    assert drive(stingy, {"t0": "A", "t2": "B"})[0] == [("t0",)]


def test_real_judge_prefers_agreement_when_trained_weights_say_so() -> None:
    models = ("t0", "t1")
    weights = np.zeros(8 + 2 * len(models))
    weights[3] = 2.0  # extra supporters
    judge = Judge(models, weights, -1.0)
    ranked = judge.candidates([Attempt("t0", "", "A"), Attempt("t1", "", "A")], {})
    assert ranked[0].aggregate and ranked[0].confidence > 0.7


@pytest.mark.parametrize(
    ("band", "requested", "cap"),
    [("low", 1024, 256), ("mid", 1024, 1024), ("high", 100, 100), ("low", 100, 100)],
)
def test_output_cap_per_band(band: str, requested: int, cap: int) -> None:
    assert output_cap_for_band(band, {"low": 256, "high": 4096}, requested) == cap


@pytest.mark.parametrize(
    ("quality", "bar", "max_tokens", "chosen"),
    [
        (0.9, 0.8, 4096, "big-4bit"),  # long output, quality holds
        (0.82, 0.8, 4096, "big"),  # 0.82 x 0.95 < 0.8
        (0.9, 0.8, 256, "big"),  # short output: not worth it
    ],
)
def test_quantized_variant_preferred_for_long_outputs_when_quality_clears(
    quality: float, bar: float, max_tokens: int, chosen: str
) -> None:
    variants = {"big": QuantizedVariant("big-4bit", 0.95, 1024)}
    assert prefer_quantized("big", variants, quality, bar, max_tokens) == chosen
    assert prefer_quantized("other", variants, quality, bar, max_tokens) == "other"


def test_registry_maps_policy_kinds_to_classes() -> None:
    assert STRATEGIES["cascade"] is Cascade and STRATEGIES["parallel"] is Parallel
    assert all(hasattr(cls, "step") for cls in STRATEGIES.values())


def test_call_is_a_tuple_of_models() -> None:
    assert Call(("a", "b")).models == ("a", "b")


def test_cost_model_charges_more_for_long_prompts_and_verbose_cheap_answers() -> None:
    from tierline.router.learned.cost_model import fit_cost_model

    rng = np.random.default_rng(0)
    n = 300
    chars = rng.integers(200, 4000, n)
    cheap_out = rng.integers(20, 400, n)
    big_out = cheap_out * 2 + rng.integers(0, 20, n)
    model = fit_cost_model(
        ["cheap", "big"], chars.astype(float), np.stack([chars // 4, chars // 4], axis=1),
        np.stack([cheap_out, big_out], axis=1), np.stack([cheap_out * 4, big_out * 4], axis=1),
        {"cheap": (1.0, 1.0), "big": (10.0, 10.0)})
    short, long = (model.expected_usd("big", c, []) for c in (500, 3000))
    assert long > short
    terse = model.expected_usd("big", 1000, [Attempt("cheap", "x" * 100, "A")])
    verbose = model.expected_usd("big", 1000, [Attempt("cheap", "x" * 1500, "A")])
    assert verbose > 2 * terse
