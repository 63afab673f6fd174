"""Output-side choices: a max-output-token cap per complexity band ("early rejection"),
and quantization-aware model choice (prefer a listed 4-bit variant for long outputs).

Policy field, per model: ``quantized: {model: <key of the 4-bit model>, quality_ratio: 0.97,
min_output_tokens: 1024}``. The variant is preferred when the request's output budget is at
least ``min_output_tokens`` and the variant's expected quality still clears the strategy's
confidence bar (:func:`choose_quantized` says how that quality is estimated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def output_cap_for_band(band: str, caps_by_band: Mapping[str, int], requested_tokens: int) -> int:
    """The max output tokens to reserve: the request's own, cut to its band's cap if any."""
    cap = caps_by_band.get(band)
    return requested_tokens if cap is None else min(requested_tokens, cap)


@dataclass(frozen=True)
class QuantizedVariant:
    """A cheaper 4-bit serving of a model and how much quality it keeps."""

    model: str
    quality_ratio: float  # expected quality of the variant / of the full model, in (0, 1]
    min_output_tokens: int  # only worth it for outputs at least this long


@dataclass(frozen=True)
class QuantizedChoice:
    """The model to call, and why (``reason`` is None when the model has no variant)."""

    model: str
    reason: dict[str, Any] | None = None


def choose_quantized(model: str, variant: QuantizedVariant | None, bar: float,
                     max_output_tokens: int,
                     p_correct: Mapping[str, float] | None = None) -> QuantizedChoice:
    """The 4-bit variant of ``model`` when the output budget is large and quality holds.

    The variant's expected quality is, from the best estimate available:
    the learned router's P(variant correct | prompt) when it knows the variant; else
    ``quality_ratio`` x P(``model`` correct | prompt) when it knows the full model; else
    ``quality_ratio`` alone (the composite estimator has no per-model quality, so the full
    model counts as 1). The variant is chosen when that quality is at least ``bar``.
    """
    if variant is None:
        return QuantizedChoice(model)
    p = p_correct or {}
    if variant.model in p:
        quality, basis = p[variant.model], f"P({variant.model})"
    elif model in p:
        quality = variant.quality_ratio * p[model]
        basis = f"{variant.quality_ratio:g} x P({model})"
    else:
        quality, basis = variant.quality_ratio, "quality_ratio"
    if max_output_tokens < variant.min_output_tokens:
        chosen = model
        why = f"output budget {max_output_tokens} < {variant.min_output_tokens}"
    else:
        chosen = variant.model if quality >= bar else model
        why = f"expected quality {quality:.3f} {'>=' if quality >= bar else '<'} bar {bar:g}"
    return QuantizedChoice(chosen, {
        "variant": variant.model, "expected_quality": round(quality, 4), "basis": basis,
        "bar": bar, "max_output_tokens": max_output_tokens, "chosen": chosen,
        "rule": f"{why} → {chosen}"})


def prefer_quantized(model: str, variants: Mapping[str, QuantizedVariant],
                     expected_quality: float, bar: float, max_output_tokens: int) -> str:
    """:func:`choose_quantized` with the full model's expected quality given directly."""
    return choose_quantized(model, variants.get(model), bar, max_output_tokens,
                            {model: expected_quality}).model
