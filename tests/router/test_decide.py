"""Decisions, fallbacks and bundles: tables for the pure core."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierline.router.envelope import build_request
from tierline.router.errors import PolicyError
from tierline.router.live.bundling import Item, bundle
from tierline.router.live.decide import decide, fallback_chain, make_estimator
from tierline.router.policy import load_policy, policy_from_dict

POLICIES = Path(__file__).resolve().parents[2] / "policies"
HARD = ("Design a fault-tolerant distributed ledger for 12 data centres and analyse its "
        "consistency guarantees under network partitions. Compare a Raft-based design against a "
        "CRDT-based design, derive the write latency of each from the round-trip times, "
        "discuss clock skew, reconfiguration, snapshotting and compaction, and state precisely "
        "which anomalies each design admits under partition and during leader failover.")
POLICY = load_policy(POLICIES / "demo.yaml")


def test_each_request_gets_a_tier_model_and_reasons() -> None:
    requests = [build_request({"prompt": p}, POLICY, now_s=0, new_id=str(i))
                for i, p in enumerate(["hi", HARD])]
    made = decide(POLICY, make_estimator(POLICY), requests)
    assert [d.request_id for d in made] == ["0", "1"]
    assert made[0].tier == "t0" and made[0].model == "sim-nano"
    assert made[1].band == "high" and made[1].model == POLICY.top_model()
    assert "band high" in made[1].reasons["rule"]
    assert decide(POLICY, make_estimator(POLICY), []) == []


def test_fallbacks_stay_in_the_tier_then_go_cheaper_never_pricier() -> None:
    data = yaml.safe_load((POLICIES / "demo.yaml").read_text())
    data["models"]["sim-mid-b"] = dict(data["models"]["sim-mid"])
    data["tiers"]["t1"] = ["sim-mid", "sim-mid-b"]
    policy = policy_from_dict(data)
    assert fallback_chain(policy, "sim-mid") == ["sim-mid-b", "sim-nano"]
    assert fallback_chain(policy, "sim-frontier") == ["sim-mid", "sim-mid-b", "sim-nano"]
    assert fallback_chain(policy, "sim-nano") == []


def test_bundles_respect_count_tokens_and_key_and_put_urgent_first() -> None:
    items = [Item(("t0", "m", "batch"), f"b{i}", 100, deadline_at=100 - i) for i in range(5)]
    items += [Item(("t0", "m", "realtime"), "r0", 100, deadline_at=1)]
    items += [Item(("t0", "m", "batch"), "huge", 10_000, deadline_at=500)]
    out = bundle(items, max_count=2, max_tokens=250)
    ids = [[it.request_id for it in b] for b in out]
    assert ids == [["b4", "b3"], ["b2", "b1"], ["b0"], ["huge"], ["r0"]]
    assert all(len({it.key for it in b}) == 1 for b in out)  # realtime never rides with batch


def test_a_long_output_budget_prefers_the_4bit_variant_when_its_quality_clears_the_bar() -> None:
    data = yaml.safe_load((POLICIES / "demo.yaml").read_text())
    data["models"]["sim-frontier-4bit"] = {**data["models"]["sim-frontier"],
                                           "usd_per_1m_output": 8.0}
    data["models"]["sim-frontier"]["quantized"] = {
        "model": "sim-frontier-4bit", "quality_ratio": 0.97, "min_output_tokens": 1024}
    data["strategy"] = {"kind": "single", "confidence_bar": 0.9}
    policy = policy_from_dict(data)
    estimator = make_estimator(policy)
    short, long_ = (build_request({"prompt": HARD, "max_output_tokens": n}, policy, now_s=0,
                                  new_id=str(n)) for n in (256, 2048))
    made = decide(policy, estimator, [short, long_])
    assert [d.model for d in made] == ["sim-frontier", "sim-frontier-4bit"]
    assert policy.tier_of("sim-frontier-4bit") == "t2"
    # the same tier first (the full-precision model), then cheaper tiers
    assert fallback_chain(policy, "sim-frontier-4bit")[:2] == ["sim-frontier", "sim-mid"]

    strict = policy_from_dict({**data, "strategy": {"kind": "single", "confidence_bar": 0.99}})
    assert decide(strict, estimator, [long_])[0].model == "sim-frontier"  # 0.97 < 0.99


def test_a_quantized_variant_must_be_a_listed_model() -> None:
    data = yaml.safe_load((POLICIES / "demo.yaml").read_text())
    data["models"]["sim-mid"]["quantized"] = {"model": "nope", "quality_ratio": 0.9}
    with pytest.raises(PolicyError, match="models.sim-mid.quantized.model"):
        policy_from_dict(data)
