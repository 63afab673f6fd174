"""Quantization-aware choice: the 4-bit variant serves a long output when its expected quality,
from the best estimate available, clears the strategy's bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierline.router.envelope import build_request
from tierline.router.live.decide import decide, make_estimator
from tierline.router.live.output_budget import QuantizedVariant, choose_quantized
from tierline.router.policy import policy_from_dict

ROOT = Path(__file__).resolve().parents[2]

VARIANT = QuantizedVariant("big-4bit", quality_ratio=0.95, min_output_tokens=1024)


@pytest.mark.parametrize(
    ("p_correct", "max_output_tokens", "chosen", "quality", "basis"),
    [
        # learned estimate of the full model only: 0.95 x P(big)
        ({"big": 0.9}, 4096, "big-4bit", 0.855, "0.95 x P(big)"),
        ({"big": 0.82}, 4096, "big", 0.779, "0.95 x P(big)"),  # 0.779 < 0.8
        ({"big": 0.9}, 512, "big", 0.855, "0.95 x P(big)"),  # short output: not worth it
        # the learned router knows the variant itself: its own P(correct), not the ratio
        ({"big": 0.99, "big-4bit": 0.85}, 4096, "big-4bit", 0.85, "P(big-4bit)"),
        ({"big": 0.99, "big-4bit": 0.6}, 4096, "big", 0.6, "P(big-4bit)"),
        # no per-model estimate (the composite): the ratio alone
        (None, 4096, "big-4bit", 0.95, "quality_ratio"),
        (None, 1000, "big", 0.95, "quality_ratio"),
    ],
)
def test_the_variant_serves_long_outputs_only_when_its_expected_quality_clears_the_bar(
        p_correct: dict[str, float] | None, max_output_tokens: int, chosen: str, quality: float,
        basis: str) -> None:
    choice = choose_quantized("big", VARIANT, 0.8, max_output_tokens, p_correct)
    assert choice.model == chosen
    assert choice.reason is not None
    assert choice.reason["expected_quality"] == pytest.approx(quality, abs=1e-4)
    assert (choice.reason["basis"], choice.reason["bar"], choice.reason["chosen"]) == (
        basis, 0.8, chosen)


def test_a_model_without_a_variant_is_kept_with_no_reason() -> None:
    choice = choose_quantized("small", None, 0.8, 4096, {"small": 0.99})
    assert choice.model == "small" and choice.reason is None


def test_the_reason_says_why_in_words() -> None:
    low = choose_quantized("big", VARIANT, 0.8, 4096, {"big": 0.5}).reason
    short = choose_quantized("big", VARIANT, 0.8, 256, {"big": 0.99}).reason
    assert low is not None and low["rule"] == "expected quality 0.475 < bar 0.8 → big"
    assert short is not None and short["rule"] == "output budget 256 < 1024 → big"


def test_a_composite_decision_records_why_it_chose_the_variant() -> None:
    data = yaml.safe_load((ROOT / "policies/demo.yaml").read_text())
    data["models"]["sim-nano-4bit"] = {**data["models"]["sim-nano"], "usd_per_1m_output": 0.2}
    data["models"]["sim-nano"]["quantized"] = {
        "model": "sim-nano-4bit", "quality_ratio": 0.9, "min_output_tokens": 1024}
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    data["strategy"] = {"kind": "single", "confidence_bar": 0.85,
                        "output_caps_by_band": {"low": 512, "mid": 512, "high": 512}}
    policy = policy_from_dict(data)
    request = build_request({"prompt": "hi", "max_output_tokens": 2048}, policy, now_s=0,
                            new_id="r")
    made = decide(policy, make_estimator(policy), [request])[0]
    # the band's cap (512) is the budget the tier worker will reserve: too short for 4-bit
    assert made.model == "sim-nano"
    assert made.reasons["quantized"]["rule"] == "output budget 512 < 1024 → sim-nano"
    uncapped = policy_from_dict({**data, "strategy": {"kind": "single", "confidence_bar": 0.85}})
    made = decide(uncapped, make_estimator(uncapped), [request])[0]
    assert made.model == "sim-nano-4bit"
    assert made.reasons["quantized"]["basis"] == "quality_ratio"
    assert made.reasons["rule"].endswith("→ sim-nano-4bit")
