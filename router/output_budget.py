"""Output-side choices: a max-output-token cap per complexity band ("early rejection"),
and quantization-aware model choice (prefer a listed 4-bit variant for long outputs).

Proposed policy field, per model: ``quantized: {model: <key of the 4-bit model>,
quality_ratio: 0.97, min_output_tokens: 1024}`` — the variant is preferred when the request's
output budget is at least ``min_output_tokens`` and ``expected quality x quality_ratio``
still clears the bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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


def prefer_quantized(model: str, variants: Mapping[str, QuantizedVariant],
                     expected_quality: float, bar: float, max_output_tokens: int) -> str:
    """The 4-bit variant of ``model`` when the output budget is large and quality holds."""
    variant = variants.get(model)
    if variant is None or max_output_tokens < variant.min_output_tokens:
        return model
    return variant.model if expected_quality * variant.quality_ratio >= bar else model
