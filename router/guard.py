"""The cost guard: while recent spend per token runs above the policy's ceiling, new work
starts one tier cheaper.

Pure: the window's spend (USD and tokens of the calls started in the last ``window_s``) is
passed in; :func:`guard_state` says whether the guard is on, and :func:`guarded` moves a
decision one tier down (never below the cheapest), recording why in its reasons. The
router worker reads the window from the record (workers/spend.py) and logs each shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from router.decide import Decision
from router.policy import GuardSpec, Policy


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


def guarded(policy: Policy, decisions: Sequence[Decision], state: GuardState) -> list[Decision]:
    """Every decision one tier cheaper while the guard is on (its reasons say so); as they
    were when it is off or the tier is the cheapest already."""
    if not state.on:
        return list(decisions)
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
