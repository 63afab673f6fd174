"""The one configuration object: a policy YAML, validated at load, frozen, passed down.

A policy names the tiers (cheapest first, each a preference-ordered list of models), the
models (provider kind, endpoint and key environment variables, prices, limits), the lanes
with their latency budgets, and the classifier, strategy and bundling settings. A broken
policy raises :class:`~tierline.router.errors.PolicyError` naming the file, the key and the reason.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from tierline.router.errors import PolicyError
from tierline.router.lanes import LANES as LANES  # re-exported: the lanes are policy too
from tierline.router.strategy_spec import BANDS as BANDS  # re-exported: bands are policy too
from tierline.router.strategy_spec import Frozen, StrategySpec

Lane = Literal["realtime", "standard", "batch"]
_SPREAD = {1: (0, 0, 0), 2: (0, 0, 1), 3: (0, 1, 2), 4: (0, 1, 3)}


class ModelLimits(Frozen):
    """Provider capacity for one model; absent means unlimited. Days are UTC days."""

    tokens_per_day: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    requests_per_minute: int | None = Field(default=None, gt=0)


class QuantizedSpec(Frozen):
    """A cheaper 4-bit serving of a model, preferred for long outputs when quality holds."""

    model: str  # the variant's key in ``models``
    quality_ratio: float = Field(gt=0, le=1)  # its expected quality / the full model's
    min_output_tokens: int = Field(default=1024, gt=0)  # only worth it for outputs this long


class ModelSpec(Frozen):
    """One model: how to reach it and what it costs."""

    provider: str = "openai"
    name: str | None = None  # the name sent to the API; defaults to the policy key
    base_url_env: str | None = None
    base_url: str | None = None  # used when base_url_env is unset or absent
    api_key_env: str | None = None
    usd_per_1m_input: float = Field(ge=0)
    usd_per_1m_output: float = Field(ge=0)
    max_concurrency: int = Field(default=16, gt=0)
    limits: ModelLimits = ModelLimits()
    # A tenant's own share of this model, held across every worker like the model's limits.
    tenant_limits: dict[str, ModelLimits] = {}
    quantized: QuantizedSpec | None = None


class LaneSpec(Frozen):
    """A latency lane: its default latency budget and output cap."""

    latency_budget_s: float = Field(gt=0)
    max_output_tokens: int = Field(default=512, gt=0)


class Prototype(Frozen):
    """A cluster prototype for the composite estimator: example texts and their complexity."""

    complexity: float = Field(ge=0, le=1)
    examples: tuple[str, ...] = Field(min_length=1)


CLASSIFIER_KINDS = ("composite", "learned")


class ClassifierSpec(Frozen):
    """Settings of the complexity estimator: ``composite`` (the article's, the default) or
    ``learned`` (the router of ``artifact``, a bundle from ``tierline router train``; see
    tierline.router.learned.bands). Thresholds band the score for both; the rest is the
    composite's."""

    kind: str = "composite"
    artifact: str | None = None  # kind learned: the bundle's path
    weights: dict[str, float] = {"perplexity": 0.3, "semantic": 0.4, "metadata": 0.3}
    thresholds: dict[str, float] = {"high": 0.7, "mid": 0.4}
    band_tiers: dict[str, str] = {}  # band -> tier; defaults spread bands over the tiers
    max_words: int = Field(default=400, gt=0)
    max_file_bytes: int = Field(default=1_000_000, gt=0)
    perplexity_midpoint: float = 2.5  # log-perplexity (nats per character) that scores 0.5
    perplexity_scale: float = Field(default=0.5, gt=0)
    prototypes: tuple[Prototype, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ClassifierSpec:
        if self.kind not in CLASSIFIER_KINDS:
            raise ValueError(f"kind: unknown estimator {self.kind!r} "
                             f"(known: {', '.join(CLASSIFIER_KINDS)})")
        if self.kind == "learned" and not self.artifact:
            raise ValueError("artifact: kind 'learned' needs the path of a trained bundle "
                             "(tierline router train DATASET --prices P --out PATH)")
        unknown = set(self.weights) - {"perplexity", "semantic", "metadata"}
        if unknown:
            raise ValueError(f"weights: unknown weight(s) {sorted(unknown)}")
        if set(self.thresholds) != {"high", "mid"}:
            raise ValueError("thresholds: must name exactly 'high' and 'mid'")
        if not self.thresholds["mid"] < self.thresholds["high"]:
            raise ValueError("thresholds: 'mid' must be below 'high'")
        bad = set(self.band_tiers) - set(BANDS)
        if bad:
            raise ValueError(f"band_tiers: unknown band(s) {sorted(bad)}")
        return self


class BundlingSpec(Frozen):
    """Bounds of one bundle: a message to a tier worker carries at most this much."""

    max_count: int = Field(default=64, gt=0)
    max_tokens: int = Field(default=200_000, gt=0)
    max_wait_s: float = Field(default=0.2, ge=0)
    ingress_chunk: int = Field(default=256, gt=0)


class FailureSpec(Frozen):
    """What happens when a model's token budget cannot take a call now, and when a call
    cannot finish in time.

    ``on_budget``: ``defer`` waits (re-queue with a countdown until the window has room);
    ``fallback`` hands the call to the next equal-or-cheaper model that has budget. Never
    escalates to a pricier model. ``fail_fast``: a model whose expected latency, learned from
    its recent calls (tierline.router.live.latency), exceeds what is left of a request's budget
    is not
    called; the request moves down its fallback chain, keeps the best answer it paid for,
    or fails with the estimate in its error. ``stall_after_s``: see tierline.schedules.watchdog.
    """

    on_budget: Literal["defer", "fallback"] = "defer"
    max_defer_s: float = Field(default=300.0, gt=0)  # a longer wait is re-checked after this
    fail_fast: bool = True
    # The watchdog re-enqueues a request that has not moved for this long (less for a lane
    # whose budget is short, never less than two broker visibility timeouts).
    stall_after_s: float = Field(default=240.0, gt=0)


class RequestLimits(Frozen):
    """Bounds on what one request may carry."""

    max_prompt_chars: int = Field(default=200_000, gt=0)
    max_output_tokens: int = Field(default=8_192, gt=0)


class GuardSpec(Frozen):
    """The cost guard (tierline.router.live.guard): while the spend per 1k tokens of the calls
    started in
    the last ``window_s`` runs above ``usd_per_1k_tokens_max``, new work starts one tier
    cheaper."""

    usd_per_1k_tokens_max: float = Field(gt=0, allow_inf_nan=False)
    window_s: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)


class LearningSpec(Frozen):
    """Live shadow evaluation (tierline.workers.engine.shadow): a sample of answered requests is
    also sent to
    the top tier (or to every tier), under its own daily budget; and when beat retrains the
    router from what the shadow calls recorded (``retrain_schedule``: a crontab line in UTC,
    or ``off``). ``route_with: promoted``: the tier workers step with the bundle promoted in
    the record (re-read at most once a minute) instead of the policy's own strategy.
    ``grader: judge``: ``judge_model`` grades the given answer against the top tier's (one
    more shadow call per shadowed request, on the shadow budget) instead of comparing the
    extracted answers. ``warm_shadow_rate``: the rate while fewer than ``warm_records``
    requests have been shadowed (a new deployment's learner has no records yet)."""

    shadow_rate: float = Field(ge=0, le=1, allow_inf_nan=False)
    lanes: tuple[Lane, ...] = Field(min_length=1)
    usd_per_day_max: float = Field(gt=0, allow_inf_nan=False)
    tiers: Literal["top", "all"] = "top"
    retrain_schedule: str = "30 3 * * *"
    route_with: Literal["policy", "promoted"] = "policy"
    warm_shadow_rate: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    warm_records: int = Field(default=200, ge=0)
    grader: Literal["agreement", "judge"] = "agreement"
    judge_model: str | None = None

    @model_validator(mode="after")
    def _check(self) -> LearningSpec:
        if len(set(self.lanes)) != len(self.lanes):
            raise ValueError(f"lanes: named twice in {list(self.lanes)}")
        if self.grader == "judge" and not self.judge_model:
            raise ValueError("judge_model: grader 'judge' needs the model that judges")
        if self.grader != "judge" and self.judge_model is not None:
            raise ValueError(f"judge_model: {self.judge_model!r} judges nothing unless "
                             f"grader is 'judge' (it is {self.grader!r})")
        fields = self.retrain_schedule.split()
        if self.retrain_schedule != "off" and len(fields) != 5:
            raise ValueError(f"retrain_schedule: a crontab line of 5 fields (minute hour day "
                             f"month weekday) or 'off', got {self.retrain_schedule!r}")
        return self


class Policy(Frozen):
    """Tiers, models, lanes and routing settings for one environment."""

    name: str = "unnamed"
    tiers: dict[str, tuple[str, ...]]
    models: dict[str, ModelSpec]
    lanes: dict[Lane, LaneSpec]
    classifier: ClassifierSpec = ClassifierSpec()
    strategy: StrategySpec = StrategySpec()
    bundling: BundlingSpec = BundlingSpec()
    requests: RequestLimits = RequestLimits()
    failure: FailureSpec = FailureSpec()
    guard: GuardSpec | None = None  # absent: no cost guard
    learning: LearningSpec | None = None  # absent: no shadow calls, no nightly retraining

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if not 1 <= len(self.tiers) <= 4:
            raise ValueError(f"tiers: between 1 and 4 tiers, got {len(self.tiers)}")
        for tier, models in self.tiers.items():
            if not models:
                raise ValueError(f"tiers.{tier}: lists no model")
            for model in models:
                if model not in self.models:
                    raise ValueError(f"tiers.{tier}: model {model!r} is not in 'models'")
        missing = [lane for lane in LANES if lane not in self.lanes]
        if missing:
            raise ValueError(f"lanes: missing {missing}")
        for name, spec in self.models.items():
            if spec.quantized is not None and spec.quantized.model not in self.models:
                raise ValueError(f"models.{name}.quantized.model: {spec.quantized.model!r} is "
                                 "not in 'models'")
        for key, names in self.strategy.models_named().items():
            unknown = [m for m in names if m not in self.models]
            if unknown:
                raise ValueError(f"strategy.options.{key}: {unknown} not in 'models'")
            for model in names:  # a call is recorded with its model's tier
                try:
                    self.tier_of(model)
                except KeyError:
                    raise ValueError(f"strategy.options.{key}: model {model!r} is in no tier"
                                     ) from None
        critical = self.strategy.options.get("critical_tier")
        if critical is not None and critical not in self.tiers:
            raise ValueError(f"strategy.options.critical_tier: unknown tier {critical!r} "
                             f"(tiers: {', '.join(self.tiers)})")
        if (self.learning is not None and self.learning.route_with == "promoted"
                and self.strategy.kind != "agreement" and not self.strategy.options.get("bundle")):
            raise ValueError("learning.route_with: 'promoted' steps with a trained bundle: the "
                             "strategy must be one that steps too (kind 'agreement', or one "
                             f"with options.bundle), not {self.strategy.kind!r}")
        judge = self.learning.judge_model if self.learning is not None else None
        if judge is not None and not any(judge in models for models in self.tiers.values()):
            raise ValueError(f"learning.judge_model: model {judge!r} is in no tier "
                             f"(models: {', '.join(self.models)})")
        for band, tier in self.classifier.band_tiers.items():
            if tier not in self.tiers:
                raise ValueError(f"classifier.band_tiers.{band}: unknown tier {tier!r}")
        for name, spec in self.models.items():
            tpd = spec.limits.tokens_per_day
            for lane, lane_spec in self.lanes.items():
                if tpd is not None and tpd < lane_spec.max_output_tokens:
                    raise ValueError(
                        f"models.{name}.limits.tokens_per_day: {tpd} is smaller than one "
                        f"request's max output tokens in lane {lane} "
                        f"({lane_spec.max_output_tokens})"
                    )
        return self

    # -- derived views -------------------------------------------------------------
    @property
    def tier_names(self) -> tuple[str, ...]:
        """Tiers cheapest first, in the order the file lists them."""
        return tuple(self.tiers)

    def tier_of(self, model: str) -> str:
        """The first tier that lists ``model`` (a 4-bit variant: its full model's tier)."""
        for tier, models in self.tiers.items():
            if model in models:
                return tier
        for name, spec in self.models.items():
            if spec.quantized is not None and spec.quantized.model == model:
                return self.tier_of(name)
        raise KeyError(model)

    def tier_for_band(self, band: str) -> str:
        """The tier a complexity band starts at: the policy's mapping or an even spread."""
        if band in self.classifier.band_tiers:
            return self.classifier.band_tiers[band]
        names = self.tier_names
        return names[_SPREAD[len(names)][BANDS.index(band)]]

    @cached_property
    def largest_daily_budget(self) -> int | None:
        """The most tokens any one model may use in a day; None when some model is unlimited.

        Cached: intake asks it for every request, and the policy is frozen.
        """
        budgets = [spec.limits.tokens_per_day for spec in self.models.values()]
        return None if any(b is None for b in budgets) else max(b for b in budgets if b)

    def top_model(self) -> str:
        """The preferred model of the most capable tier: the 'everything to the top' baseline."""
        return self.tiers[self.tier_names[-1]][0]

    def usd(self, model: str, tokens_in: int, tokens_out: int) -> float:
        """Price of one call at the policy's list prices."""
        spec = self.models[model]
        return (tokens_in * spec.usd_per_1m_input + tokens_out * spec.usd_per_1m_output) / 1e6


def policy_from_dict(data: Any, source: str = "<policy>") -> Policy:
    """Validate a parsed policy; errors name ``source``, the key path and the reason."""
    if not isinstance(data, dict):
        raise PolicyError(source, "<root>", "a policy is a mapping of keys to values")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "value_error":  # our own checks: the message starts with the key
            named, sep, rest = reason.partition(": ")
            if sep and " " not in named:
                key, reason = f"{key}.{named}" if key else named, rest
        key = key or "<root>"
        raise PolicyError(source, key, reason) from exc


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), "<file>", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), "<file>", f"not UTF-8: {exc.reason} at byte {exc.start}"
                          ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), "<yaml>", str(exc).replace("\n", " ")) from exc
    except RecursionError:  # the YAML composer recurses once per level of nesting
        raise PolicyError(str(path), "<yaml>", "nested too deeply to read") from None
    except ValueError:  # the YAML constructor's int() past 4,300 digits
        raise PolicyError(str(path), "<yaml>", "a number too long to read") from None
    return policy_from_dict(data, str(path))
