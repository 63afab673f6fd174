"""Policies load, validate, and fail naming the file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierline.router.errors import PolicyError
from tierline.router.policy import load_policy, policy_from_dict

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DEMO = yaml.safe_load((POLICIES / "demo.yaml").read_text())


@pytest.mark.parametrize("name", ["demo", "dev", "staging", "prod"])
def test_every_shipped_policy_loads(name: str) -> None:
    policy = load_policy(POLICIES / f"{name}.yaml")
    assert policy.tier_names and set(policy.lanes) == {"realtime", "standard", "batch"}


def test_bands_spread_over_two_three_and_four_tiers() -> None:
    for n, expected in [(2, ["t0", "t0", "t1"]), (3, ["t0", "t1", "t2"]),
                        (4, ["t0", "t1", "t3"])]:
        models = {f"m{i}": {"usd_per_1m_input": i, "usd_per_1m_output": i} for i in range(n)}
        policy = policy_from_dict({**DEMO, "models": models,
                                   "tiers": {f"t{i}": [f"m{i}"] for i in range(n)}})
        assert [policy.tier_for_band(b) for b in ("low", "mid", "high")] == expected


def _broken(**changes: object) -> dict[str, object]:
    data = yaml.safe_load((POLICIES / "demo.yaml").read_text())
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


@pytest.mark.parametrize(("changes", "key", "reason"), [
    ({"models__sim-nano__usd_per_1m_input": -1}, "models.sim-nano.usd_per_1m_input",
     "greater than or equal to 0"),
    ({"models__sim-nano__usd_per_1m_input": "cheap"}, "models.sim-nano.usd_per_1m_input",
     "valid number"),
    ({"models__sim-nano__limits": {"tokens_per_day": -5}},
     "models.sim-nano.limits.tokens_per_day", "greater than 0"),
    ({"models__sim-nano__limits": {"tokens_per_day": 100}}, "models.sim-nano.limits.tokens_per_day",
     "smaller than one request's max output tokens"),
    ({"tiers__t0": ["nope"]}, "tiers.t0", "model 'nope' is not in 'models'"),
    ({"lanes": {"realtime": {"latency_budget_s": 5}}}, "lanes", "missing"),
    ({"classifier__thresholds": {"high": 0.3, "mid": 0.4}}, "classifier.thresholds",
     "'mid' must be below"),
    ({"bundling__max_count": 0}, "bundling.max_count", "greater than 0"),
    ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
])
def test_a_broken_policy_names_the_key_and_reason(changes: dict[str, object], key: str,
                                                  reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_dict(_broken(**changes), "policies/x.yaml")
    assert info.value.source == "policies/x.yaml"
    assert info.value.key == key
    assert reason in info.value.reason


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing.yaml: <file>: cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [unclosed\n")
    with pytest.raises(PolicyError, match="bad.yaml: <yaml>"):
        load_policy(bad)
