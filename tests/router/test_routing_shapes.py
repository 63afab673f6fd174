"""Routing evaluation on differently shaped data: prices that do not follow accuracy, free
models, clones, degenerate grades, and line-level validation of odd values."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests import recorded
from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, fold_items, parse_items, split_items
from tierline.router.evaluation.goal import choose_methods, verdicts
from tierline.router.evaluation.methods import (
    Report,
    Row,
    Summary,
    band_models,
    evaluate,
    tier_subset,
)
from tierline.router.learned.training import strong_model, train_routing


def _items(accuracy: dict[str, float], n: int = 90, kind: str = "choice", seed: int = 0,
           clones: dict[str, str] | None = None) -> list[Item]:
    return recorded.items(n, accuracy, kind=kind, seed=seed, clones=clones,
                          prompt=lambda i: f"q{i} {'x' * (i % 5)}",
                          completion_tokens=lambda i: 10 + i % 7)


def _report(accuracy: dict[str, float], prices: dict[str, tuple[float, float]],
            n: int = 90, clones: dict[str, str] | None = None) -> Report:
    train, test = split_items(_items(accuracy, n, clones=clones), 0.3, 0)
    return evaluate(train_routing(train, prices), test, prices, ["mid"] * len(test))


def test_the_top_tier_is_the_most_accurate_model_not_the_priciest() -> None:
    # price order a < b < c, but c is the worst: no chain may climb to it
    acc = {"a": 0.6, "b": 0.8, "c": 0.3}
    assert strong_model(["a", "b", "c"], acc) == "b"
    assert tier_subset(["a", "b", "c"], acc, 2) == ("a", "b")
    assert tier_subset(["a", "b", "c"], acc, 3) is None
    assert band_models(["a", "b", "c"], acc) == {"low": "a", "mid": "a", "high": "b"}


def test_when_the_cheapest_is_the_most_accurate_the_next_best_is_strong() -> None:
    acc = {"a": 0.9, "b": 0.5, "c": 0.7}
    assert strong_model(["a", "b", "c"], acc) == "c"
    assert tier_subset(["a", "b", "c"], acc, 2) == ("a", "c")
    assert strong_model(["a"], {"a": 0.5}) == "a" and tier_subset(["a"], {"a": 0.5}, 2) is None


def test_a_pricier_clone_is_never_a_tier() -> None:
    acc = {"a": 0.5, "b": 0.7, "b-clone": 0.7}
    assert strong_model(["a", "b", "b-clone"], acc) == "b"  # ties go to the cheaper
    assert tier_subset(["a", "b", "b-clone"], acc, 3) is None


def test_hybrid_never_verifies_with_a_model_pricier_than_the_strong_one() -> None:
    prices = {"a": (0.1, 0.1), "b": (1.0, 1.0), "c": (5.0, 5.0), "d": (0.5, 0.5)}
    report = _report({"a": 0.5, "b": 0.8, "c": 0.7, "d": 0.4}, prices)
    chains = {r.top_chain for r in report.rows if r.method == "hybrid"}
    assert chains and not any("c" in chain.replace(">", "+").split("+") for chain in chains)
    assert any("d" in chain.replace(">", "+").split("+") for chain in chains)


def test_permuted_prices_give_cascades_that_end_at_the_best_model() -> None:
    acc = {"good": 0.85, "fair": 0.6, "poor": 0.3}
    prices = {"fair": (0.1, 0.1), "good": (1.0, 1.0), "poor": (5.0, 5.0)}  # poor is priciest
    report = _report(acc, prices)
    chains = {r.top_chain for r in report.rows if r.method == "cascade-2"}
    assert chains and all("poor" not in c for c in chains)
    assert "cascade-3" not in {r.method for r in report.rows}


@pytest.mark.parametrize("free", ["weak", "strong"])
def test_a_free_model_gives_finite_shares(free: str) -> None:
    prices = {"weak": (1.0, 1.0), "strong": (10.0, 30.0)} | {free: (0.0, 0.0)}
    report = _report({"weak": 0.5, "strong": 0.85}, prices)
    assert report.best_single == "strong"
    assert report.cost_unit == ("weak" if free == "strong" else "strong")
    for r in report.rows:
        assert math.isfinite(r.cost_vs_best) and math.isfinite(r.accuracy_vs_best), r
    for s in report.summaries:
        assert math.isfinite(s.aiq), s


def test_no_model_ever_right_is_a_clear_error() -> None:
    prices = {"a": (1.0, 1.0), "b": (2.0, 2.0)}
    with pytest.raises(InvalidInput, match="no model answers any"):
        _report({"a": 0.0, "b": 0.0}, prices, n=40)


def test_every_model_free_is_a_clear_error() -> None:
    prices = {"a": (0.0, 0.0), "b": (0.0, 0.0)}
    with pytest.raises(InvalidInput, match=r"cost \$0"):
        _report({"a": 0.5, "b": 0.8}, prices, n=40)


def test_a_model_always_right_and_one_always_wrong() -> None:
    report = _report({"never": 0.0, "always": 1.0}, {"never": (0.1, 0.1), "always": (1, 1)},
                     n=40)
    assert report.best_single == "always" and report.best_accuracy == 1.0
    assert all(math.isfinite(s.aiq) for s in report.summaries)


def test_seven_models_with_clones_train_and_evaluate_quickly() -> None:
    acc = {f"m{j}": 0.3 + 0.1 * j for j in range(5)}
    prices = {f"m{j}": (0.1 * (j + 1), 0.2 * (j + 1)) for j in range(5)}
    prices |= {"m4-clone": (2.0, 4.0), "m2-clone": (0.05, 0.1)}
    started = time.perf_counter()
    report = _report(acc, prices, n=60, clones={"m4-clone": "m4", "m2-clone": "m2"})
    assert time.perf_counter() - started < 15
    tops = {r.top_chain.split(">")[-1] for r in report.rows if r.method.startswith("cascade-")}
    assert "m4-clone" not in tops  # the pricier copy of m4 is dominated


def _bad(field: str, value: Any, where: str = "outcome") -> dict[str, Any]:
    line = {"id": "1", "prompt": "p", "grader": {"kind": "choice", "answer": "A"},
            "outcomes": {"a": {"response": "r", "answer": "A", "score": 1.0,
                               "prompt_tokens": 1, "completion_tokens": 1}}}
    (line["outcomes"]["a"] if where == "outcome" else line)[field] = value
    return line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_bad("score", float("nan")), r"line 4: outcomes.a: field 'score' must be a number in"),
        (_bad("score", 1.5), "'score' must be a number in"),
        (_bad("prompt_tokens", -3), "'prompt_tokens' must be a finite number >= 0"),
        (_bad("completion_tokens", float("inf")), "'completion_tokens' must be a finite"),
        (_bad("grader", {"kind": "exact"}, where="item"), "grader kind 'exact' is not supported"),
    ],
)
def test_odd_values_are_refused_with_their_line(line: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_items([(4, line)], "f.jsonl")


def test_an_item_missing_a_model_or_switching_grader_names_it() -> None:
    two = _bad("score", 1.0)
    two["outcomes"]["b"] = dict(two["outcomes"]["a"])
    with pytest.raises(InvalidInput, match="line 2: no outcome for model 'b'"):
        parse_items([(1, two), (2, _bad("score", 1.0))])
    recorded = _bad("grader", {"kind": "recorded"}, where="item")
    with pytest.raises(InvalidInput, match="line 2: grader kind 'recorded' differs"):
        parse_items([(1, _bad("score", 1.0)), (2, recorded)])


def _summary(method: str, kind: str, c95: float | None) -> Summary:
    return Summary(method, kind, 3, 1.0, 0.9, c95, c95)


def test_a_zero_cost_is_a_cost_not_a_missing_one() -> None:
    row = Row("x", "cheap", "tierline", 0.9, 0.0, 1.0, 0.0, 0.0, 1.0, "")
    report = Report([row], [_summary("cheap", "tierline", 0.0), _summary("dear", "tierline", 0.5),
                            _summary("base", "baseline", 0.0)], "top", 0.9, 0.0)
    chosen = choose_methods([report])
    assert chosen["cost_to_95"] == "cheap"
    got = {v.criterion: v for v in verdicts(report, chosen)}
    assert got["cost_to_95"].baseline == "base" and got["cost_to_95"].baseline_value == 0.0
    assert not got["cost_to_95"].met  # nothing is 20% cheaper than free


def test_methods_are_chosen_by_their_mean_over_the_folds() -> None:
    def fold(lucky: float, steady: float, acc: tuple[float, float]) -> Report:
        rows = [Row("lucky bar=0.5", "lucky", "tierline", acc[0], 1.0, 1.0, 1.0, 0, 1, ""),
                Row("steady bar=0.5", "steady", "tierline", acc[1], 1.0, 1.0, 1.0, 0, 1, "")]
        return Report(rows, [_summary("lucky", "tierline", lucky),
                             _summary("steady", "tierline", steady)], "top", 0.9, 1.0)

    # "lucky" wins one fold by a hair and loses the others by a lot
    folds = [fold(0.10, 0.11, (0.80, 0.79)), fold(0.30, 0.12, (0.70, 0.78)),
             fold(None, 0.13, (0.70, 0.77))]  # type: ignore[arg-type]
    alone = choose_methods(folds[:1])
    assert (alone["cost_to_95"], alone["accuracy"]) == ("lucky", "lucky bar=0.5")
    chosen = choose_methods(folds)
    assert chosen["cost_to_95"] == "steady"  # never reaching it counts as infinitely dear
    assert chosen["accuracy"] == "steady bar=0.5"


def test_folds_validate_every_item_once() -> None:
    items = recorded.items(10, {"a": 0.5})
    pairs = fold_items(items, 3, seed=0)
    assert sorted(it.id for _, val in pairs for it in val) == sorted(it.id for it in items)
    for fit, val in pairs:
        assert not {it.id for it in fit} & {it.id for it in val}
        assert len(fit) + len(val) == 10
    with pytest.raises(InvalidInput, match="--folds must be at least 2"):
        fold_items(items, 1, seed=0)


def test_the_routellm_sweep_spreads_over_its_training_scores() -> None:
    """Thresholds are quantiles of P(weak is enough) on the train split, as RouteLLM
    calibrates them: from everything to the weak model to nearly everything to the strong."""
    graded = recorded.items(300, lambda i: {"weak": (i % 10) / 10, "strong": 0.9},
                            prompt=lambda i: f"question {i} of level{i % 10}")
    train, test = split_items(graded, 0.3, 0)
    trained = train_routing(train, {"weak": (0.1, 0.1), "strong": (1.0, 1.0)})
    grid = trained.weak_enough_grid
    assert len(grid) == 28 and list(grid) == sorted(grid) and grid[0] < grid[-1]
    report = evaluate(trained, test, {"weak": (0.1, 0.1), "strong": (1.0, 1.0)},
                      ["mid"] * len(test))
    shares = sorted({round(r.cost_vs_best, 6) for r in report.rows if r.method == "routellm"})
    assert len(shares) >= 6  # ten levels of difficulty: many distinct operating points
    weak_alone = next(r.cost_vs_best for r in report.rows if r.strategy == "single weak")
    assert shares[0] == pytest.approx(weak_alone)  # the lowest threshold sends all to weak
