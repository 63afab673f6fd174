"""``classifier.kind: learned``: the trained router bands prompts by how likely the cheapest
tier's model is to answer them right, and the decision says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import recorded
from tierline.router.envelope import build_request
from tierline.router.errors import PolicyError
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.training import train_routing
from tierline.router.live.decide import decide, make_estimator
from tierline.router.policy import policy_from_dict

PRICES = {"cheap": (0.1, 0.4), "top": (5.0, 20.0)}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "routing"
    items = recorded.items(240, recorded.easy_or_hard("cheap", {"top": 0.9}),
                           prompt=recorded.easy_hard_prompt)
    save_bundle(bundle_of(train_routing(items, PRICES)), path)
    return path


def _policy(classifier: dict[str, Any], models: dict[str, Any] | None = None) -> Any:
    models = models or {m: {"provider": "openai", "base_url": "http://127.0.0.1:9",
                            "usd_per_1m_input": i, "usd_per_1m_output": o}
                        for m, (i, o) in PRICES.items()}
    return policy_from_dict({
        "name": "learned-bands", "tiers": {"t0": ["cheap"], "t1": ["top"]}, "models": models,
        "lanes": {lane: {"latency_budget_s": 600, "max_output_tokens": 256}
                  for lane in ("realtime", "standard", "batch")},
        "classifier": {"band_tiers": {"low": "t0", "mid": "t1", "high": "t1"}, **classifier}})


def test_prompts_the_cheap_model_gets_right_stay_on_the_cheap_tier(artifact: Path) -> None:
    policy = _policy({"kind": "learned", "artifact": str(artifact)})
    prompts = [recorded.easy_hard_prompt(900), recorded.easy_hard_prompt(901)]
    requests = [build_request({"prompt": p, "lane": "batch"}, policy, now_s=0, new_id=str(i))
                for i, p in enumerate(prompts)]
    easy, hard = decide(policy, make_estimator(policy), requests)
    assert (easy.band, easy.tier, easy.model) == ("low", "t0", "cheap")
    assert (hard.band, hard.tier, hard.model) == ("high", "t1", "top")
    assert easy.reasons["p_correct"]["cheap"] > 0.6 > 0.3 > hard.reasons["p_correct"]["cheap"]
    assert easy.score == pytest.approx(1 - easy.reasons["p_correct"]["cheap"], abs=1e-4)
    assert "band low → tier t0 → cheap" in easy.reasons["rule"]


def test_a_learned_classifier_needs_an_artifact_for_the_policys_models(artifact: Path) -> None:
    with pytest.raises(PolicyError, match=r"classifier\.artifact.*needs the path"):
        _policy({"kind": "learned"})
    with pytest.raises(PolicyError, match=r"classifier\.kind.*unknown estimator 'neural' "
                                          r"\(known: composite, learned\)"):
        _policy({"kind": "neural"})
    other = {m: {"provider": "openai", "base_url": "http://127.0.0.1:9", "usd_per_1m_input": 1,
                 "usd_per_1m_output": 1} for m in ("cheap", "top", "extra")}
    policy = _policy({"kind": "learned", "artifact": str(artifact)}, other)
    with pytest.raises(PolicyError, match=r"classifier\.artifact.*trained for"):
        make_estimator(policy)
    missing = _policy({"kind": "learned", "artifact": str(artifact.parent / "nothing")})
    with pytest.raises(PolicyError, match=r"classifier\.artifact.*cannot read"):
        make_estimator(missing)
