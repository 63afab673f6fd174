"""Routing decisions: complexity band → tier → model, with the reasons recorded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tierline.router.envelope import Request
from tierline.router.learned.bands import learned_estimator
from tierline.router.live.composite import CompositeEstimator, band_of
from tierline.router.live.output_budget import (
    QuantizedChoice,
    QuantizedVariant,
    choose_quantized,
    output_cap_for_band,
)
from tierline.router.policy import Policy


class Scored(Protocol):
    """A batch's complexity in [0, 1], and per prompt what it came from."""

    @property
    def composite(self) -> np.ndarray: ...

    def reasons(self, i: int) -> dict[str, Any]: ...

    def p_correct(self, i: int) -> Mapping[str, float] | None: ...


class Estimator(Protocol):
    """Scores a batch of prompts for complexity in [0, 1]."""

    def score(self, texts: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> Scored: ...


ESTIMATORS: dict[str, Callable[[Policy], Estimator]] = {
    "composite": lambda policy: CompositeEstimator(policy.classifier),
    "learned": learned_estimator,
}


def make_estimator(policy: Policy) -> Estimator:
    """The estimator the policy names (``classifier.kind``), built from the policy."""
    return ESTIMATORS[policy.classifier.kind](policy)


@dataclass(frozen=True)
class Decision:
    """Where one request goes first, and why."""

    request_id: str
    band: str
    score: float
    strategy: str
    tier: str
    model: str
    reasons: dict[str, Any] = field(default_factory=dict)


def decide(policy: Policy, estimator: Estimator, requests: Sequence[Request]) -> list[Decision]:
    """Classify a batch in one vectorised call and pick each request's tier and model."""
    if not requests:
        return []
    scores = estimator.score([r.prompt_text for r in requests], [r.metadata for r in requests])
    bands = band_of(scores.composite, policy.classifier.thresholds)
    out = []
    for i, (request, band) in enumerate(zip(requests, bands, strict=True)):
        tier = policy.tier_for_band(band)
        # the budget the tier worker will reserve: the request's own, cut to its band's cap
        budget = output_cap_for_band(band, policy.strategy.output_caps_by_band,
                                     request.max_output_tokens)
        choice = first_model(policy, policy.tiers[tier][0], budget, scores.p_correct(i))
        model = choice.model
        reasons: dict[str, Any] = {
            **scores.reasons(i),
            "rule": f"score {scores.composite[i]:.3f} → band {band} → tier {tier} → {model}",
        }
        if choice.reason is not None:
            reasons["quantized"] = choice.reason
        out.append(Decision(request.id, band, float(scores.composite[i]),
                            policy.strategy.kind, tier, model, reasons))
    return out


def quantized_variant(policy: Policy, model: str) -> QuantizedVariant | None:
    """The 4-bit variant the policy lists for ``model``, if any."""
    spec = policy.models[model].quantized
    if spec is None:
        return None
    return QuantizedVariant(spec.model, spec.quality_ratio, spec.min_output_tokens)


def first_model(policy: Policy, model: str, max_output_tokens: int,
                p_correct: Mapping[str, float] | None = None) -> QuantizedChoice:
    """The model to call first in place of ``model``: its 4-bit variant when the output budget
    is long and the variant's expected quality clears the strategy's confidence bar.

    Both paths use it: :func:`decide` (with the composite estimator there is no per-model
    quality, so ``p_correct`` is None and the variant's ``quality_ratio`` alone is its
    expected quality; the learned estimator gives P(correct) per model), and the learned
    step machine with the bundle's P(correct) (see
    :func:`tierline.router.live.output_budget.choose_quantized`).
    """
    return choose_quantized(model, quantized_variant(policy, model),
                            policy.strategy.confidence_bar, max_output_tokens, p_correct)


def fallback_chain(policy: Policy, model: str) -> list[str]:
    """Models to try after ``model`` fails: the rest of its tier, then cheaper tiers, never pricier.

    Failures and rate limits never escalate to a more capable (pricier) tier.
    """
    tier = policy.tier_of(model)
    names = policy.tier_names
    chain = [m for m in policy.tiers[tier] if m != model]
    for cheaper in reversed(names[: names.index(tier)]):
        chain.extend(m for m in policy.tiers[cheaper] if m not in chain and m != model)
    return chain
