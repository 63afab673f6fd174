"""The cost guard: while recent spend per token runs above the policy's ceiling, new work
starts one tier cheaper.

Pure: the window's spend (USD and tokens of the calls started in the last ``window_s``) is
passed in; :func:`guard_state` says whether the guard is on, and :func:`guarded` moves a
decision one tier down (never below the cheapest), recording why in its reasons. The
router worker reads the window from the record (tierline/record/spend.py) and logs each shift.

A step machine (a learned bundle's, or ``agreement``) chooses its own calls, so moving
where it starts changes nothing: its decision is capped instead (the reasons name the
dearest tier it may call, one below the top), and :func:`machine_for` wraps the machine
for that request in :class:`Capped`, which sends a call of a dearer model to the cap
tier's model and, when that one has answered, accepts the best answer paid for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tierline.router.live.decide import Decision
from tierline.router.policy import GuardSpec, Policy
from tierline.router.strategies.basic import Strategy
from tierline.router.strategies.steps import Accept, Action, Attempt, Call, RequestView


@dataclass(frozen=True)
class GuardState:
    """The window's spend, and whether it runs above the ceiling."""

    usd: float
    tokens: int
    usd_per_1k_tokens: float
    ceiling: float
    on: bool

    def reason(self) -> dict[str, Any]:
        return {"usd_per_1k_tokens": round(self.usd_per_1k_tokens, 6),
                "max": self.ceiling, "window_usd": round(self.usd, 6),
                "window_tokens": self.tokens}


def guard_state(spec: GuardSpec, usd: float, tokens: int) -> GuardState:
    """Spend per 1k tokens over the window against the ceiling (no tokens: off)."""
    rate = 1000.0 * usd / tokens if tokens > 0 else 0.0
    return GuardState(usd, tokens, rate, spec.usd_per_1k_tokens_max,
                      tokens > 0 and rate > spec.usd_per_1k_tokens_max)


def guarded(policy: Policy, decisions: Sequence[Decision], state: GuardState,
            steps: bool = False) -> list[Decision]:
    """Every decision one tier cheaper while the guard is on (its reasons say so); as they
    were when it is off or the tier is the cheapest already. ``steps``: the policy routes
    with a step machine, whose decisions are capped instead (:func:`capped`)."""
    if not state.on:
        return list(decisions)
    if steps:
        return capped(policy, decisions, state)
    names = policy.tier_names
    out = []
    for d in decisions:
        at = names.index(d.tier) if d.tier in names else 0
        if at == 0:
            out.append(replace(d, reasons={**d.reasons, "guard": {
                **state.reason(), "shift": "none: the cheapest tier already"}}))
            continue
        tier = names[at - 1]
        model = policy.tiers[tier][0]
        out.append(replace(d, tier=tier, model=model, reasons={**d.reasons, "guard": {
            **state.reason(), "shift": f"{d.tier} → {tier}", "model": f"{d.model} → {model}"}}))
    return out


def capped(policy: Policy, decisions: Sequence[Decision], state: GuardState) -> list[Decision]:
    """A step machine's decisions while the guard is on: their reasons cap the tiers it may
    call one below the top (none with one tier); where the request starts is unchanged."""
    names = policy.tier_names
    if len(names) == 1:
        shift = "none: one tier only"
        return [replace(d, reasons={**d.reasons, "guard": {**state.reason(), "shift": shift}})
                for d in decisions]
    top, cap = names[-1], names[-2]
    guard = {**state.reason(), "shift": f"cap {top} → {cap}: the step machine calls no tier "
                                        f"above {cap}", "cap": cap}
    return [replace(d, reasons={**d.reasons, "guard": guard}) for d in decisions]


def cap_of(decision: Decision) -> str | None:
    """The dearest tier a step machine may call for this decision (None: uncapped)."""
    guard = decision.reasons.get("guard")
    cap = guard.get("cap") if isinstance(guard, dict) else None
    return cap if isinstance(cap, str) else None


@dataclass(frozen=True)
class Capped:
    """A step machine that may call only ``allowed`` models: a call of any other goes to
    ``instead`` (once); past that, the best answer paid for (the scorer's evidence, ties to
    the latest) is accepted."""

    inner: Strategy
    allowed: frozenset[str]
    instead: str

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        action = self.inner.step(request, attempts)
        if isinstance(action, Accept):
            return action
        called = {a.model for a in attempts}
        wanted = [m if m in self.allowed else self.instead for m in action.models]
        fresh = tuple(dict.fromkeys(m for m in wanted if m not in called))
        if fresh:
            return Call(fresh)
        if not attempts:  # unreachable: ``instead`` is uncalled on the first step
            return Call((self.instead,))
        best = max(range(len(attempts)), key=lambda i: (attempts[i].evidence, i))
        return Accept(attempts[best].model, attempts[best].answer, 0.0)


def machine_for(policy: Policy, machine: Strategy, decision: Decision) -> Strategy:
    """The machine that steps one request: ``machine`` itself, or capped at the tier its
    decision's reasons name while the guard was on."""
    cap = cap_of(decision)
    if cap is None or cap not in policy.tier_names:
        return machine
    names = policy.tier_names[: policy.tier_names.index(cap) + 1]
    allowed = frozenset(m for t in names for m in policy.tiers[t])
    return Capped(machine, allowed, policy.tiers[cap][0])
