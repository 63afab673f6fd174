"""Strategy settings are checked at load: an unknown kind or an option no strategy reads is
an error naming the key, never a silent single-model route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tierline.router.errors import PolicyError
from tierline.router.policy import policy_from_dict
from tierline.router.strategy_spec import STRATEGY_KINDS

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"


def _with(strategy: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text())
    data["models"]["spare"] = {**data["models"]["sim-nano"]}  # listed, but in no tier
    data["strategy"] = strategy
    return data


@pytest.mark.parametrize("strategy", [
    {"kind": "single"},
    {"kind": "cascade", "options": {"judge": "labels"}},
    {"kind": "parallel"},
    {"kind": "parallel", "options": {"models": ["sim-nano", "sim-mid"], "aggregate": "vote"}},
    {"kind": "parallel", "options": {"aggregate": "evaluator", "evaluator": "sim-frontier"}},
    {"kind": "hybrid", "options": {"verify_with": ["sim-mid"]}},
    {"kind": "hybrid", "options": {"verify_with": ["sim-nano", "sim-mid"], "critical_tier": "t1"}},
    {"kind": "value", "options": {"bundle": "b.joblib", "max_calls": 2}},
    {"kind": "learned", "options": {"bundle": "b.joblib"}},
    {"kind": "parallel", "options": {"bundle": "b.joblib", "aggregate": "vote"}},
    {"kind": "cascade", "options": {"bundle": "b.joblib", "verify_with": ["sim-mid"]}},
])
def test_valid_strategies_load(strategy: dict[str, Any]) -> None:
    assert policy_from_dict(_with(strategy)).strategy.kind == strategy["kind"]


@pytest.mark.parametrize(("strategy", "key", "reason"), [
    ({"kind": "casacde"}, "strategy.kind", "unknown strategy 'casacde' (known: single, cascade, "
                                           "hybrid, parallel, value, learned, agreement)"),
    ({"kind": "value"}, "strategy.options.bundle", "needs a trained bundle"),
    ({"kind": "learned", "options": {"bundle": ""}}, "strategy.options.bundle",
     "needs a trained bundle"),
    ({"kind": "parallel", "options": {"models": ["sim-nano", "gpt-9"]}},
     "strategy.options.models", "['gpt-9'] not in 'models'"),
    ({"kind": "parallel", "options": {"models": ["sim-nano"]}}, "strategy.options.models",
     "at least 2"),
    ({"kind": "parallel", "options": {"models": ["sim-nano", "sim-nano"]}},
     "strategy.options.models", "more than once"),
    ({"kind": "parallel", "options": {"models": "sim-nano"}}, "strategy.options.models",
     "a list of model names"),
    ({"kind": "parallel", "options": {"aggregate": "mean"}}, "strategy.options.aggregate",
     "unknown aggregate 'mean' (known: vote, evaluator)"),
    ({"kind": "parallel", "options": {"aggregate": "evaluator"}}, "strategy.options.evaluator",
     "exactly when aggregate is 'evaluator'"),
    ({"kind": "parallel", "options": {"evaluator": "sim-mid"}}, "strategy.options.evaluator",
     "exactly when aggregate is 'evaluator'"),
    ({"kind": "parallel", "options": {"aggregate": "evaluator", "evaluator": "judge-9"}},
     "strategy.options.evaluator", "['judge-9'] not in 'models'"),
    ({"kind": "cascade", "options": {"models": ["sim-nano", "sim-mid"]}},
     "strategy.options.models", "only kind 'parallel' reads it, not 'cascade'"),
    ({"kind": "cascade", "options": {"verify_with": ["sim-mid"]}},
     "strategy.options.verify_with", "only kind 'hybrid' reads it"),
    ({"kind": "hybrid"}, "strategy.options.verify_with", "needs the models that verify"),
    ({"kind": "hybrid", "options": {"verify_with": ["nope"]}}, "strategy.options.verify_with",
     "['nope'] not in 'models'"),
    ({"kind": "parallel", "options": {"models": ["sim-nano", "spare"]}},
     "strategy.options.models", "model 'spare' is in no tier"),
    ({"kind": "hybrid", "options": {"verify_with": ["sim-mid"], "critical_tier": "t7"}},
     "strategy.options.critical_tier", "unknown tier 't7' (tiers: t0, t1, t2)"),
    ({"kind": "single", "options": {"critical_tier": "t1"}}, "strategy.options.critical_tier",
     "only kind 'hybrid' reads it"),
    ({"kind": "parallel", "options": {"bundle": "b.joblib", "aggregate": "evaluator",
                                      "evaluator": "sim-mid"}},
     "strategy.options.evaluator", "not read with options.bundle"),
])
def test_a_broken_strategy_names_the_key_and_reason(strategy: dict[str, Any], key: str,
                                                    reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_dict(_with(strategy), "policies/x.yaml")
    assert info.value.key == key
    assert reason in info.value.reason


def test_the_kinds_are_the_documented_ones() -> None:
    assert STRATEGY_KINDS == ("single", "cascade", "hybrid", "parallel", "value", "learned",
                              "agreement")
