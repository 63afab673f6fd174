"""The value cascade: call whichever model buys the most expected accuracy per dollar.

At each step the judge ranks the candidate answers paid for so far; the lookahead predicts
the best answer's accuracy after one more call to each uncalled model. The step calls the
model with the largest ``(p_after - confidence) / (usd / usd of the priciest model)`` when
that ratio reaches ``min_gain_per_cost``; otherwise it accepts the judge's best. A cheap
model agreeing can end the request; a disagreement can buy a tie-breaker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tierline.router.learned.cost_model import CostModel
from tierline.router.learned.judge import router_logit_map
from tierline.router.learned.lookahead import Lookahead
from tierline.router.strategies.basic import JudgeLike
from tierline.router.strategies.steps import Accept, Action, Attempt, Call, RequestView


@dataclass(frozen=True)
class ValueCascade:
    """Start at the cheapest tier; buy the next call only while it is worth its cost."""

    tiers: tuple[str, ...]  # cheapest first
    judge: JudgeLike
    lookahead: Lookahead
    usd_per_call: Mapping[str, float]
    min_gain_per_cost: float
    max_calls: int = 3
    costs: CostModel | None = None  # per-request cost estimates; else the mean per call

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call((self.tiers[0],))
        logits = router_logit_map(self.tiers, request.p_correct)
        ranked = self.judge.candidates(attempts, logits)
        best = ranked[0]
        called = {a.model for a in attempts}
        top_usd = max(self.usd_per_call[m] for m in self.tiers) or 1.0
        options = [m for m in self.tiers if m not in called]
        if options and len(attempts) < self.max_calls:
            def value(m: str) -> float:
                gain = self.lookahead.p_after(ranked, attempts, m, logits) - best.confidence
                usd = (self.usd_per_call[m] if self.costs is None else
                       self.costs.expected_usd(m, len(request.prompt), attempts))
                return gain / max(usd / top_usd, 1e-9)

            worth = {m: value(m) for m in options}
            choice = max(options, key=worth.__getitem__)
            if worth[choice] >= self.min_gain_per_cost:
                return Call((choice,))
        return Accept(best.answer_from, best.answer, best.confidence, best.aggregate)
