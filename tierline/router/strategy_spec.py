"""A policy's strategy block: which step machine routes a request, and its settings, checked
at load (the rest of the policy is in :mod:`tierline.router.policy`)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tierline.router.live.early_stop import EarlyStop

BANDS = ("low", "mid", "high")
STRATEGY_KINDS = ("single", "cascade", "hybrid", "parallel", "value", "learned", "agreement")
_LEARNED_ONLY = ("value", "learned")  # strategies that exist only as a trained bundle
AGGREGATES = ("vote", "evaluator")  # how kind 'parallel' brings its answers to one
# learned.answers.EXTRACTORS (strategies.agreement)
ANSWER_KINDS = ("auto", "choice", "number")
# Tier index per band (low, mid, high) by number of tiers, when the policy gives no mapping.


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EarlyStopSpec(Frozen):
    """Stop a generation whose per-token confidence stays low (tierline.router.live.early_stop).

    Applies where the provider streams logprobs (OpenAI-compatible); Anthropic has none.
    """

    min_tokens: int = Field(gt=0)
    window: int = Field(gt=0)
    min_mean_logprob: float

    @model_validator(mode="after")
    def _check(self) -> EarlyStopSpec:
        if not (math.isfinite(self.min_mean_logprob) and self.min_mean_logprob < 0):
            raise ValueError("min_mean_logprob: must be a negative number (a mean "
                             f"log-probability, e.g. -1.5), got {self.min_mean_logprob}")
        return self

    def rule(self) -> EarlyStop:
        """The pure rule these settings describe."""
        return EarlyStop(self.min_tokens, self.window, self.min_mean_logprob)


class StrategySpec(Frozen):
    """Which strategy routes a request, and its settings. ``kind`` is one of STRATEGY_KINDS.

    Without ``options.bundle`` (the tier worker's own loop, tierline/workers/engine/execute.py):

    - ``single``: the decided model, falling back on failure.
    - ``cascade``: escalate a tier while a free judge (``options.judge``, see
      tierline.router.live.escalation) scores the answer below ``confidence_bar``.
    - ``parallel``: ask ``options.models`` (default: every tier's preferred model) at once
      and aggregate (``options.aggregate``): ``vote`` (default), a majority over the
      extracted answers, or ``evaluator``, where the model ``options.evaluator`` picks the
      best response (tierline/workers/engine/panel.py, tierline.router.strategies.aggregation).
    - ``hybrid``: a cascade that, at ``options.critical_tier`` (default: the last tier), asks
      that tier's preferred model together with ``options.verify_with`` and takes their vote.

    With ``options.bundle`` (a file from ``tierline router train``): the trained step machine
    of tierline.router.strategies.learned, for every kind but ``single``; ``value`` and
    ``learned`` exist only there.
    A bundled ``parallel`` takes the trained judge's pick, or with ``options.aggregate:
    vote`` the vote (tierline.router.strategies.aggregation.majority, the same rule offline).

    ``agreement`` needs no bundle (tierline.router.strategies.agreement, the zero-training
    default): the
    ``options.panel`` (default 2) cheapest tiers are asked at once and their answer is
    accepted when they agree, else ``options.escalate_to`` (default: the top tier's model)
    answers; ``options.answer`` names the answer extractor (``auto``, ``choice``, ``number``).
    """

    kind: str = "single"
    confidence_bar: float = Field(default=0.5, ge=0, le=1)
    # Early rejection: a request's max output tokens cut to its complexity band's cap.
    output_caps_by_band: dict[str, int] = {}
    early_stop: EarlyStopSpec | None = None  # absent: every generation runs to its end
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check(self) -> StrategySpec:
        bad = set(self.output_caps_by_band) - set(BANDS)
        if bad:
            raise ValueError(f"output_caps_by_band: unknown band(s) {sorted(bad)}")
        if any(cap <= 0 for cap in self.output_caps_by_band.values()):
            raise ValueError("output_caps_by_band: caps must be positive")
        if self.kind not in STRATEGY_KINDS:
            raise ValueError(f"kind: unknown strategy {self.kind!r} (known: "
                             f"{', '.join(STRATEGY_KINDS)})")
        bundled = bool(self.options.get("bundle"))
        if self.kind in _LEARNED_ONLY and not bundled:
            raise ValueError(f"options.bundle: kind {self.kind!r} is a learned strategy and "
                             "needs a trained bundle (tierline router train)")
        _check_panel_options(self.kind, self.options, bundled)
        _check_agreement_options(self.kind, self.options)
        return self

    def models_named(self) -> dict[str, list[str]]:
        """Model names the options name, by option key (checked against ``models``)."""
        o = self.options
        named: dict[str, list[str]] = {key: list(o[key]) for key in ("models", "verify_with")
                                       if key in o}
        if "evaluator" in o:
            named["evaluator"] = [o["evaluator"]]
        if "escalate_to" in o:
            named["escalate_to"] = [o["escalate_to"]]
        return named


def _model_list(options: dict[str, Any], key: str, at_least: int) -> None:
    names = options[key]
    if not (isinstance(names, list | tuple) and all(isinstance(m, str) and m for m in names)):
        raise ValueError(f"options.{key}: a list of model names, got {names!r}")
    if len(names) < at_least:
        raise ValueError(f"options.{key}: at least {at_least} model(s), got {len(names)}")
    repeated = sorted({m for m in names if list(names).count(m) > 1})
    if repeated:
        raise ValueError(f"options.{key}: lists {repeated} more than once")


def _check_agreement_options(kind: str, o: dict[str, Any]) -> None:
    """Kind ``agreement``: no bundle; panel, escalate_to and answer well formed."""
    own = ("panel", "escalate_to", "answer")
    if kind != "agreement":
        for key in own:
            if key in o:
                raise ValueError(f"options.{key}: only kind 'agreement' reads it, not {kind!r}")
        return
    if o.get("bundle"):
        raise ValueError("options.bundle: kind 'agreement' needs no trained bundle (with one, "
                         "use kind cascade or value)")
    panel = o.get("panel", 2)
    if not (isinstance(panel, int) and not isinstance(panel, bool) and 1 <= panel <= 3):
        raise ValueError(f"options.panel: how many of the cheapest tiers must agree, 1 to 3, "
                         f"got {panel!r}")
    if "escalate_to" in o and not (isinstance(o["escalate_to"], str) and o["escalate_to"]):
        raise ValueError(f"options.escalate_to: a model name, got {o['escalate_to']!r}")
    if o.get("answer", "auto") not in ANSWER_KINDS:
        raise ValueError(f"options.answer: unknown answer kind {o.get('answer')!r} (known: "
                         f"{', '.join(ANSWER_KINDS)})")


def _check_panel_options(kind: str, o: dict[str, Any], bundled: bool) -> None:
    """Shapes of the parallel and hybrid options, and that no option is silently ignored."""
    for key in ("models", "aggregate", "evaluator"):
        if key in o and kind != "parallel":
            raise ValueError(f"options.{key}: only kind 'parallel' reads it, not {kind!r}")
    if "critical_tier" in o and kind != "hybrid":
        raise ValueError(f"options.critical_tier: only kind 'hybrid' reads it, not {kind!r}")
    if "verify_with" in o and not (kind == "hybrid" or (kind == "cascade" and bundled)):
        raise ValueError(f"options.verify_with: only kind 'hybrid' reads it, not {kind!r}")
    if bundled:  # the trained judge aggregates (or the vote) and the last tier is critical
        for key in ("evaluator", "critical_tier"):
            if key in o:
                raise ValueError(f"options.{key}: not read with options.bundle (the trained "
                                 "judge aggregates)")
        if o.get("aggregate", "vote") != "vote":
            raise ValueError("options.aggregate: with options.bundle only 'vote' (else the "
                             "trained judge aggregates)")
    if "models" in o:
        _model_list(o, "models", 2)
    if kind == "hybrid":
        if "verify_with" not in o:
            raise ValueError("options.verify_with: kind 'hybrid' needs the models that verify "
                             "the critical step (else it is a cascade)")
        _model_list(o, "verify_with", 1)
    aggregate = o.get("aggregate", "vote")
    if aggregate not in AGGREGATES:
        raise ValueError(f"options.aggregate: unknown aggregate {aggregate!r} (known: "
                         f"{', '.join(AGGREGATES)})")
    if (aggregate == "evaluator") != ("evaluator" in o):
        raise ValueError("options.evaluator: names the evaluator model exactly when "
                         "aggregate is 'evaluator'")
    if "evaluator" in o and not (isinstance(o["evaluator"], str) and o["evaluator"]):
        raise ValueError(f"options.evaluator: a model name, got {o['evaluator']!r}")
    if "critical_tier" in o and not isinstance(o["critical_tier"], str):
        raise ValueError(f"options.critical_tier: a tier name, got {o['critical_tier']!r}")
