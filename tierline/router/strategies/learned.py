"""Learned strategies in the live pipeline: the step machine a policy asks for, built from
its trained bundle (see :mod:`tierline.router.learned.bundle`).

A policy opts in by naming a bundle in ``strategy.options.bundle``; the tiers' preferred
models are the cascade's tiers, cheapest first. Options by ``strategy.kind``:

    cascade, hybrid   confidence_bar; options start_bar, skip_bar, verify_with (hybrid)
    value             options min_gain_per_cost, max_calls
    learned           confidence_bar (the cheapest model whose P(correct) clears it)
    parallel          options models (default: every tier's model), aggregate (vote;
                      default: the trained judge)

The strategies name the tiers' models. For a request's first call, a tier model with a
4-bit variant is served by that variant when :func:`first_call` says so; the strategy still
sees the answer as its tier model's, so it judges and climbs as usual.

The same classes run offline in ``tierline bench routing``, so a live run over replayed
outcomes reproduces the offline figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tierline.router.errors import PolicyError
from tierline.router.learned.bundle import RoutingBundle
from tierline.router.live.decide import first_model
from tierline.router.live.output_budget import QuantizedChoice
from tierline.router.policy import Policy
from tierline.router.strategies.agreement import Agreement, UntrainedParts, untrained_parts
from tierline.router.strategies.basic import Cascade, LearnedPick, Parallel, SingleModel, Strategy
from tierline.router.strategies.steps import RequestView
from tierline.router.strategies.value_cascade import ValueCascade

Builder = Callable[[Policy, RoutingBundle, tuple[str, ...], Mapping[str, Any]], Strategy]


def _cascade(policy: Policy, b: RoutingBundle, tiers: tuple[str, ...],
             o: Mapping[str, Any]) -> Strategy:
    return Cascade(tiers, b.judge, policy.strategy.confidence_bar, start_bar=o.get("start_bar"),
                   skip_bar=o.get("skip_bar"), verify_with=tuple(o.get("verify_with", ())))


def _value(policy: Policy, b: RoutingBundle, tiers: tuple[str, ...],
           o: Mapping[str, Any]) -> Strategy:
    return ValueCascade(tiers, b.judge, b.lookahead, b.usd_per_call,
                        float(o.get("min_gain_per_cost", 1.0)), int(o.get("max_calls", 3)),
                        b.costs if o.get("per_request_costs") else None)


def _learned(policy: Policy, b: RoutingBundle, tiers: tuple[str, ...],
             o: Mapping[str, Any]) -> Strategy:
    return LearnedPick(tiers, b.usd_per_call, policy.strategy.confidence_bar,
                       o.get("cost_weight"))


def _parallel(policy: Policy, b: RoutingBundle, tiers: tuple[str, ...],
              o: Mapping[str, Any]) -> Strategy:
    judge = None if o.get("aggregate") == "vote" else b.judge
    return Parallel(tuple(o.get("models", tiers)), b.usd_per_call, judge)


BUILDERS: dict[str, Builder] = {"cascade": _cascade, "hybrid": _cascade, "value": _value,
                                "learned": _learned, "parallel": _parallel}


def live_strategy(policy: Policy, bundle: RoutingBundle) -> Strategy:
    """The policy's learned strategy over its tiers; a PolicyError names what does not fit."""
    kind = policy.strategy.kind
    if kind not in BUILDERS:
        raise PolicyError(policy.name, "strategy.kind",
                          f"{kind!r} cannot use a bundle (known: {', '.join(BUILDERS)})")
    tiers = tuple(policy.tiers[t][0] for t in policy.tier_names)
    unknown = [m for m in tiers if m not in bundle.models]
    if unknown:
        raise PolicyError(policy.name, "strategy.options.bundle",
                          f"the bundle was trained for {list(bundle.models)}, not {unknown}")
    return BUILDERS[kind](policy, bundle, tiers, policy.strategy.options)


def steps_live(policy: Policy) -> bool:
    """Whether the tier worker drives a step machine for this policy (a bundle's, or the
    zero-training ``agreement``) rather than its own chains."""
    return bool(policy.strategy.options.get("bundle")) or policy.strategy.kind == "agreement"


def untrained_strategy(policy: Policy) -> tuple[UntrainedParts, Strategy]:
    """Kind ``agreement``: the stand-in parts and the step machine over the tiers' models."""
    tiers = tuple(policy.tiers[t][0] for t in policy.tier_names)
    o = policy.strategy.options
    target = o.get("escalate_to")
    if target is not None and target not in tiers:
        raise PolicyError(policy.name, "strategy.options.escalate_to",
                          f"{target!r} is no tier's preferred model ({', '.join(tiers)})")
    return (untrained_parts(tiers, str(o.get("answer", "auto"))),
            Agreement(tiers, int(o.get("panel", 2)), target))


def policy_strategy(strategy: Strategy) -> dict[str, Any] | None:
    """The policy ``strategy`` mapping that rebuilds ``strategy`` from a bundle (the inverse
    of :func:`live_strategy`, ``options.bundle`` left to the caller; the tiers are
    :func:`live_models`), or None for strategies that do not run live this way. A single
    model runs as kind ``single``, the tier worker's own loop, and needs no bundle."""
    if isinstance(strategy, SingleModel):
        return {"kind": "single", "confidence_bar": 0.5, "options": {}}
    if isinstance(strategy, Parallel):
        vote = {"aggregate": "vote"} if strategy.judge is None else {}
        return {"kind": "parallel", "confidence_bar": 0.5,
                "options": {"models": list(strategy.models), **vote}}
    if isinstance(strategy, Cascade):
        options: dict[str, Any] = {"skip_bar": strategy.skip_bar, "start_bar": strategy.start_bar,
                                   "verify_with": list(strategy.verify_with)}
        kind, bar = ("hybrid" if strategy.verify_with else "cascade"), strategy.bar
    elif isinstance(strategy, ValueCascade):
        options = {"min_gain_per_cost": strategy.min_gain_per_cost,
                   "max_calls": strategy.max_calls,
                   "per_request_costs": strategy.costs is not None}
        kind, bar = "value", 0.5
    else:
        return None
    return {"kind": kind, "confidence_bar": bar,
            "options": {k: v for k, v in options.items() if v not in (None, [])}}


def views(bundle: RoutingBundle | UntrainedParts, prompts: Sequence[str], bands: Sequence[str],
          max_output_tokens: Sequence[int]) -> list[RequestView]:
    """What the strategy reads per request: the learned P(correct) of every model, in one
    vectorised call for the whole bundle."""
    p = bundle.router.predict(prompts)
    return [RequestView(prompt, {m: float(p[i, j]) for j, m in enumerate(bundle.models)},
                        bands[i], max_output_tokens[i])
            for i, prompt in enumerate(prompts)]


def first_call(policy: Policy, model: str, view: RequestView) -> QuantizedChoice:
    """What serves the strategy's first call of ``model``: the model, or its 4-bit variant
    when the request's output budget is long and the variant's expected quality (the
    bundle's P(variant correct), else quality_ratio x P(model correct)) clears the bar."""
    return first_model(policy, model, view.max_output_tokens, view.p_correct)


def live_models(strategy: Strategy) -> tuple[str, ...]:
    """The models a strategy that runs live calls, one tier each, cheapest first."""
    if isinstance(strategy, SingleModel):
        return (strategy.model,)
    if isinstance(strategy, Parallel):
        return strategy.models
    return tuple(getattr(strategy, "tiers", ()))
