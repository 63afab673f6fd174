"""Offline evaluation: frontier maths, replay costs and grades, dataset validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Outcome, models_of, parse_items, split_items
from tierline.router.evaluation.frontier import aiq, cost_to_reach, hull
from tierline.router.evaluation.methods import evaluate, tier_subset
from tierline.router.evaluation.replay import Replay, grade, run_strategy
from tierline.router.learned.training import train_routing
from tierline.router.strategies.basic import Cascade, Parallel, SingleModel
from tierline.router.strategies.steps import Accept, Attempt, RequestView

PRICES = {"cheap": (1.0, 1.0), "mid": (5.0, 5.0), "top": (20.0, 20.0)}


@pytest.mark.parametrize(
    ("points", "vertices"),
    [
        ([(1.0, 0.5)], [(0.0, 0.0), (1.0, 0.5)]),
        # a dominated point is not on the hull; the hull stops at the best quality
        ([(1.0, 0.6), (2.0, 0.5), (3.0, 0.9), (4.0, 0.8)],
         [(0.0, 0.0), (1.0, 0.6), (3.0, 0.9)]),
        # a point under the chord between neighbours drops out
        ([(1.0, 0.5), (2.0, 0.6), (3.0, 0.9)], [(0.0, 0.0), (1.0, 0.5), (3.0, 0.9)]),
    ],
)
def test_hull_is_upper_convex_and_non_decreasing(points, vertices) -> None:  # type: ignore[no-untyped-def]
    assert hull(points) == vertices


@pytest.mark.parametrize(
    ("points", "max_cost", "expected"),
    [
        ([(1.0, 1.0)], 1.0, 0.5),  # triangle from the origin
        ([(1.0, 1.0)], 2.0, 0.75),  # then flat
        ([(0.5, 1.0)], 1.0, 0.75),
        ([(2.0, 1.0)], 1.0, 0.25),  # beyond max cost: interpolated, not counted past it
    ],
)
def test_aiq_is_the_normalised_area_under_the_hull(points, max_cost, expected) -> None:  # type: ignore[no-untyped-def]
    assert aiq(points, max_cost) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("points", "target", "expected"),
    [
        ([(1.0, 1.0)], 0.5, 0.5),
        ([(1.0, 0.6), (3.0, 1.0)], 0.8, 2.0),
        ([(1.0, 0.6)], 0.9, None),
    ],
)
def test_cost_to_reach_interpolates_on_the_hull(points, target, expected) -> None:  # type: ignore[no-untyped-def]
    got = cost_to_reach(points, target)
    assert got == (None if expected is None else pytest.approx(expected))


def _line(i: int, key: str, answers: dict[str, str], kind: str = "choice") -> dict[str, Any]:
    return {
        "id": f"x/{i}", "prompt": f"question {i} about {'math' if i % 2 else 'history'}",
        "grader": {"kind": kind, "answer": key} if kind == "choice" else {"kind": kind},
        "meta": {},
        "outcomes": {m: {"response": f"the answer is ({a})", "answer": a,
                         "score": float(a == key), "prompt_tokens": 100,
                         "completion_tokens": 100 * (j + 1)}
                     for j, (m, a) in enumerate(answers.items())},
    }


def _items(n: int, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        key = "ABCD"[i % 4]
        answers = {}
        for m, p in (("cheap", 0.5), ("mid", 0.7), ("top", 0.9)):
            answers[m] = key if rng.random() < p else "ABCD"[(i + 1) % 4]
        lines.append((i + 1, _line(i, key, answers)))
    return parse_items(lines)


def _replay(items: list[Item]) -> Replay:
    models = ("cheap", "mid", "top")
    usd = np.array([[(o.prompt_tokens * PRICES[m][0] + o.completion_tokens * PRICES[m][1]) / 1e6
                     for m, o in ((m, it.outcomes[m]) for m in models)] for it in items])
    scores = np.array([[it.outcomes[m].score for m in models] for it in items])
    attempts = [[Attempt(m, it.outcomes[m].response, it.outcomes[m].answer) for m in models]
                for it in items]
    views = [RequestView(it.prompt, {m: 0.5 for m in models}) for it in items]
    return Replay(models, items, usd, scores, attempts, attempts, {"router": views})


class NeverSure:
    def candidates(self, attempts, router_logits):  # type: ignore[no-untyped-def]
        from tierline.router.learned.judge import Candidate

        last = attempts[-1]
        return [Candidate(last.answer, last.model, (last.model,), 0.0)]


def test_a_cascade_pays_for_every_model_it_called() -> None:
    items = _items(10)
    replay = _replay(items)
    result = run_strategy(Cascade(("cheap", "mid", "top"), NeverSure(), 0.9), replay)
    assert result.usd_per_request == pytest.approx(replay.usd.sum(axis=1).mean())
    assert result.calls_per_request == 3 and result.escalation_rate == 1.0
    assert result.accuracy == pytest.approx(replay.scores[:, 2].mean())
    assert result.chains == {"cheap>mid>top": 10}


def test_single_model_matches_its_recorded_accuracy_and_cost() -> None:
    replay = _replay(_items(20))
    result = run_strategy(SingleModel("mid"), replay)
    assert result.accuracy == pytest.approx(replay.scores[:, 1].mean())
    assert result.usd_per_request == pytest.approx(replay.usd[:, 1].mean())


def test_parallel_vote_costs_the_sum_of_its_models() -> None:
    replay = _replay(_items(20))
    result = run_strategy(Parallel(("cheap", "top"), {"cheap": 1.0, "top": 2.0}), replay)
    assert result.usd_per_request == pytest.approx(replay.usd[:, [0, 2]].sum(axis=1).mean())


@pytest.mark.parametrize(
    ("key", "accept", "scores", "expected"),
    [
        ("B", Accept("a", "B", 1.0, aggregate=True), [0.0, 1.0], 1.0),  # voted letter graded
        ("B", Accept("a", "C", 1.0, aggregate=False), [1.0, 0.0], 1.0),  # single: recorded
        (None, Accept("b", "7", 1.0, aggregate=True), [1.0, 0.0], 0.0),  # recorded: response
    ],
)
def test_grade_rules(key, accept, scores, expected) -> None:  # type: ignore[no-untyped-def]
    item = Item("i", "p", "choice" if key else "recorded", key, {},
                {"a": Outcome("", None, 0, 1, 1), "b": Outcome("", None, 0, 1, 1)})
    assert grade(item, np.array(scores), ("a", "b"), accept) == expected


def test_parse_errors_name_the_line() -> None:
    good = _line(0, "A", {"cheap": "A"})
    bad = {k: v for k, v in good.items() if k != "prompt"}
    with pytest.raises(InvalidInput, match="line 7: missing field 'prompt'"):
        parse_items([(6, good), (7, bad)])
    worse = _line(1, "A", {"cheap": "A"})
    del worse["outcomes"]["cheap"]["completion_tokens"]
    with pytest.raises(InvalidInput, match="line 3: outcomes.cheap: missing field"):
        parse_items([(3, worse)])


def test_a_model_without_a_price_is_named() -> None:
    items = _items(4)
    with pytest.raises(InvalidInput, match="'top'"):
        models_of(items, {"cheap": (1, 1), "mid": (1, 1)})


def test_models_are_ordered_by_recorded_cost_not_by_name() -> None:
    items = _items(4)
    assert models_of(items, {"cheap": (30, 30), "mid": (5, 5), "top": (1, 1)}) == [
        "top", "mid", "cheap"]


def test_split_is_deterministic_and_disjoint() -> None:
    items = _items(50)
    a_train, a_test = split_items(items, 0.3, 7)
    b_train, b_test = split_items(items, 0.3, 7)
    assert [i.id for i in a_test] == [i.id for i in b_test] and len(a_test) == 15
    assert not {i.id for i in a_train} & {i.id for i in a_test}


def test_tier_subsets_keep_the_ends_and_skip_when_too_few_models() -> None:
    acc = {"a": 0.5, "b": 0.4, "c": 0.7, "d": 0.9}
    assert tier_subset(["a", "b", "c", "d"], acc, 3) == ("a", "c", "d")
    assert tier_subset(["a", "b", "c", "d"], acc, 2) == ("a", "d")
    assert tier_subset(["a", "d"], acc, 3) is None


def test_end_to_end_evaluation_on_a_synthetic_set() -> None:
    items = _items(240, seed=3)
    train, test = split_items(items, 0.3, 0)
    trained = train_routing(train, PRICES, seed=0)
    assert trained.models == ("cheap", "mid", "top")
    report = evaluate(trained, test, PRICES, ["mid"] * len(test))
    methods = {r.method for r in report.rows}
    assert {"oracle", "random", "cascade-2", "cascade-3", "parallel", "hybrid", "learned",
            "knn (RouterBench)", "routellm", "frugalgpt", "composite"} <= methods
    assert "cascade-4" not in methods  # three models only
    assert report.best_single == "top"
    oracle = next(r for r in report.rows if r.method == "oracle")
    assert oracle.accuracy >= max(r.accuracy for r in report.rows if r.kind == "reference"
                                  and r.method.startswith("single"))
    weak_alone, perfect = (r for r in report.rows if r.method == "perfect judge")
    singles = {r.strategy: r for r in report.rows if r.method.startswith("single ")}
    cheap, top = singles["single cheap"], singles["single top"]
    assert weak_alone.accuracy == cheap.accuracy
    assert weak_alone.usd == pytest.approx(cheap.usd)
    assert perfect.accuracy >= max(cheap.accuracy, top.accuracy)  # only wrong answers escalate
    assert perfect.usd < cheap.usd + top.usd


def test_empty_train_split_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        train_routing([], PRICES)


def _summary(method: str, kind: str, aiq_: float, c95: float | None, c99: float | None):  # type: ignore[no-untyped-def]
    from tierline.router.evaluation.methods import Summary

    return Summary(method, kind, 5, 1.0, aiq_, c95, c99)


def test_verdicts_need_a_larger_aiq_and_a_fifth_less_cost() -> None:
    from tierline.router.evaluation.goal import choose_methods, verdicts
    from tierline.router.evaluation.methods import Report, Row

    row = Row("cascade-2 bar=0.9", "cascade-2", "tierline", 0.8, 1.0, 1.05, 1.0, 1.0, 2.0, "")
    report = Report(
        [row],
        [_summary("cascade-2", "tierline", 0.97, 0.15, 0.40),
         _summary("value-2", "tierline", 0.99, 0.30, None),
         _summary("frugalgpt", "baseline", 0.96, 0.20, 0.45),
         _summary("knn", "baseline", 0.90, None, None)],
        "top", 0.75, 1.0)
    chosen = choose_methods([report])
    assert chosen == {"aiq": "value-2", "cost_to_95": "cascade-2", "cost_to_99": "cascade-2",
                      "accuracy": "cascade-2 bar=0.9"}
    got = {v.criterion: (v.baseline, v.met) for v in verdicts(report, chosen)}
    assert got == {"aiq": ("frugalgpt", True), "cost_to_95": ("frugalgpt", True),
                   "cost_to_99": ("frugalgpt", False), "accuracy": ("single top", True)}


@pytest.mark.parametrize(
    ("n_models", "kind", "present", "absent"),
    [
        (1, "choice", {"learned", "frugalgpt", "routellm"}, {"cascade-2", "parallel", "hybrid"}),
        (4, "recorded", {"cascade-4", "cascade-4+skip", "value-4", "hybrid"}, set()),
    ],
)
def test_any_number_of_models_and_either_grader(n_models, kind, present, absent) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(n_models)
    models = [f"m{j}" for j in range(n_models)]
    lines = []
    for i in range(120):
        key = "ABCD"[i % 4]
        outs = {}
        for j, m in enumerate(models):
            a = key if rng.random() < 0.4 + 0.15 * j else "ABCD"[(i + 1) % 4]
            outs[m] = {"response": f"the answer is ({a})", "answer": a, "score": float(a == key),
                       "prompt_tokens": 50, "completion_tokens": 20 + 10 * j}
        grader = {"kind": kind, "answer": key} if kind == "choice" else {"kind": kind}
        lines.append((i + 1, {"id": str(i), "prompt": f"q {i}", "grader": grader,
                              "outcomes": outs}))
    items = parse_items(lines)
    prices = {m: (0.1 * (j + 1) ** 2, 0.2 * (j + 1) ** 2) for j, m in enumerate(models)}
    train, test = split_items(items, 0.3, 0)
    report = evaluate(train_routing(train, prices), test, prices, ["low"] * len(test))
    methods = {r.method for r in report.rows}
    assert present <= methods and not absent & methods
