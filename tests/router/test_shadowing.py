"""The learning policy validates with errors naming the key; shadow sampling is a function of
the request id; shadow answers are graded against the top tier's and the gold label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tierline.router.errors import PolicyError
from tierline.router.live.shadowing import (
    JUDGE_LABELS,
    Graded,
    grade,
    judge_prompt,
    judged,
    sample_point,
    sampled,
    shadow_models,
    verdict,
)
from tierline.router.policy import LearningSpec, policy_from_dict

DEMO = yaml.safe_load((Path(__file__).resolve().parents[2] / "policies" / "demo.yaml")
                      .read_text())
GOOD = {"shadow_rate": 0.05, "lanes": ["batch", "standard"], "usd_per_day_max": 2.0}


def _with(learning: Any) -> dict[str, Any]:
    return {**DEMO, "learning": learning}


def test_a_learning_section_loads_with_its_defaults() -> None:
    spec = policy_from_dict(_with(GOOD)).learning
    assert spec is not None
    assert (spec.shadow_rate, spec.lanes, spec.tiers) == (0.05, ("batch", "standard"), "top")
    assert spec.retrain_schedule == "30 3 * * *"
    assert policy_from_dict(DEMO).learning is None


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({"shadow_rate": 1.5}, "learning.shadow_rate", "less than or equal to 1"),
    ({"shadow_rate": -0.1}, "learning.shadow_rate", "greater than or equal to 0"),
    ({"shadow_rate": "often"}, "learning.shadow_rate", "number"),
    ({"lanes": []}, "learning.lanes", "at least 1"),
    ({"lanes": ["urgent"]}, "learning.lanes.0", "'realtime', 'standard' or 'batch'"),
    ({"lanes": ["batch", "batch"]}, "learning.lanes", "named twice"),
    ({"usd_per_day_max": 0}, "learning.usd_per_day_max", "greater than 0"),
    ({"usd_per_day_max": float("inf")}, "learning.usd_per_day_max", "finite"),
    ({"tiers": "some"}, "learning.tiers", "'top' or 'all'"),
    ({"retrain_schedule": "nightly"}, "learning.retrain_schedule", "crontab line"),
    ({"sample": 0.1}, "learning.sample", "Extra inputs"),
])
def test_a_bad_learning_section_names_its_key(change: dict[str, Any], key: str,
                                               reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_dict(_with({**GOOD, **change}), "p.yaml")
    assert f"p.yaml: {key}:" in str(info.value) and reason in str(info.value)


def test_routing_with_the_promoted_bundle_needs_a_strategy_that_steps() -> None:
    with pytest.raises(PolicyError, match="learning.route_with: 'promoted' steps"):
        policy_from_dict(_with({**GOOD, "route_with": "promoted"}), "p.yaml")
    stepping = {**DEMO, "strategy": {"kind": "agreement"},
                "learning": {**GOOD, "route_with": "promoted"}}
    assert policy_from_dict(stepping).learning.route_with == "promoted"  # type: ignore[union-attr]


def test_a_learning_section_without_its_budget_is_refused() -> None:
    with pytest.raises(PolicyError, match="learning.usd_per_day_max: Field required"):
        policy_from_dict(_with({"shadow_rate": 0.1, "lanes": ["batch"]}), "p.yaml")


def test_sampling_is_the_same_for_the_same_request_id_and_near_the_rate() -> None:
    spec = LearningSpec(shadow_rate=0.1, lanes=("batch",), usd_per_day_max=1.0)
    ids = [f"req-{i}" for i in range(20_000)]
    first = [sampled(i, "batch", spec) for i in ids]
    assert first == [sampled(i, "batch", spec) for i in ids]
    assert 0.09 < sum(first) / len(ids) < 0.11
    assert all(0.0 <= sample_point(i) < 1.0 for i in ids[:100])


def test_only_the_named_lanes_are_sampled_and_rates_0_and_1_are_none_and_all() -> None:
    none = LearningSpec(shadow_rate=0.0, lanes=("batch",), usd_per_day_max=1.0)
    every = LearningSpec(shadow_rate=1.0, lanes=("batch",), usd_per_day_max=1.0)
    assert not any(sampled(f"r{i}", "batch", none) for i in range(500))
    assert all(sampled(f"r{i}", "batch", every) for i in range(500))
    assert not any(sampled(f"r{i}", "realtime", every) for i in range(500))


def test_shadow_models_are_the_top_tier_or_every_tier_less_the_one_that_answered() -> None:
    top = policy_from_dict(_with(GOOD))
    every = policy_from_dict(_with({**GOOD, "tiers": "all"}))
    assert top.learning is not None and every.learning is not None
    assert shadow_models(top, "sim-nano", top.learning) == ["sim-frontier"]
    assert shadow_models(top, "sim-frontier", top.learning) == []
    assert shadow_models(every, "sim-mid", every.learning) == ["sim-nano", "sim-frontier"]


@pytest.mark.parametrize(("cheap", "top_text", "agrees"), [
    ("The answer is (B).", "answer: B", True),  # the same choice letter
    ("#### 1,200", "so the total is 1200", True),  # the same number
    ("Paris.", "  paris ", True),  # no answer to extract: normalised text
    ("The answer is 12", "The answer is 13", False),
    ("", "The answer is 13", False),  # an empty answer agrees with nothing
    ("The answer is 12", "", None),  # no top answer: nothing to grade by
    ("9" * 5000, "9" * 5000, True),  # a number too large for a float does not crash
])
def test_a_shadow_answer_is_graded_against_the_top_tiers(cheap: str, top_text: str,
                                                        agrees: bool | None) -> None:
    graded = grade([("cheap", cheap), ("top", top_text)], "top", None)
    assert graded[0].agrees_with_top is agrees
    assert graded[1].agrees_with_top is (True if top_text else None)


def test_hostile_text_is_graded_without_raising() -> None:
    graded = grade([("cheap", "\x00\ud800 B" * 1000), ("top", "\x1b[2J")], "top", "\ud800")
    assert [g.agrees_with_top for g in graded] == [False, True]


def test_a_gold_label_grades_every_answer_case_and_punctuation_ignored() -> None:
    graded = grade([("cheap", "Billing."), ("top", "shipping")], "top", "billing")
    assert graded == [Graded("cheap", "billing", False, True),
                      Graded("top", "shipping", True, False)]


@pytest.mark.parametrize(("learning", "message"), [
    ({"grader": "judge"}, "learning.judge_model: grader 'judge' needs"),
    ({"judge_model": "sim-mid"}, "judges nothing unless grader is 'judge'"),
    ({"grader": "judge", "judge_model": "gpt-nowhere"}, "learning.judge_model: model "
                                                        "'gpt-nowhere' is in no tier"),
    ({"grader": "oracle"}, "learning.grader")])
def test_a_broken_judge_grader_is_refused_naming_the_key(learning: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_dict(_with({**GOOD, **learning}))


def test_a_judge_grader_loads() -> None:
    spec = policy_from_dict(_with({**GOOD, "grader": "judge", "judge_model": "sim-mid"})).learning
    assert spec is not None and (spec.grader, spec.judge_model) == ("judge", "sim-mid")


@pytest.mark.parametrize(("reply", "read"), [
    ("same", True), ("Same.", True), (" DIFFERENT ", False), ("", None), (None, None),
    ("they are the same", None), ("\x00" * 10, None), ("same" * 100_000, None)])
def test_the_judges_reply_is_read_as_one_label_or_nothing(reply: str | None,
                                                          read: bool | None) -> None:
    assert verdict(reply) is read


def test_the_simulator_answers_the_judge_prompt_with_one_of_its_labels() -> None:
    from tierline.sim.fleet import ModelProfile
    from tierline.sim.synthetic import classify, parse_classification

    prompt = judge_prompt("What is 6 times 7?", "It is 41.", "The answer is 42.")
    parsed = parse_classification(prompt)
    assert parsed is not None and parsed[0] == list(JUDGE_LABELS)
    assert "Answer A: It is 41." in parsed[1] and "Answer B: The answer is 42." in parsed[1]
    said = {classify(parsed[0], parsed[1], f"m{seed}", ModelProfile(), seed, None)
            for seed in range(20)}
    assert {verdict(s) for s in said} <= {True, False}


def test_a_judges_verdict_replaces_the_extracted_comparison_of_its_answer() -> None:
    graded = grade([("cheap", "41"), ("top", "42")], "top", None)
    assert [g.agrees_with_top for g in judged(graded, "cheap", True)] == [True, True]
    assert judged(graded, "cheap", None) == graded


def test_a_warm_up_rate_samples_more_until_enough_requests_are_shadowed() -> None:
    spec = policy_from_dict(_with({**GOOD, "shadow_rate": 0.0, "warm_shadow_rate": 1.0,
                                   "warm_records": 10})).learning
    assert spec is not None
    assert sampled("r1", "batch", spec, records=9) and not sampled("r1", "batch", spec, 10)
    assert not sampled("r1", "batch", spec)  # no count given: the plain rate
    with pytest.raises(PolicyError, match="learning.warm_shadow_rate"):
        policy_from_dict(_with({**GOOD, "warm_shadow_rate": 2}))
