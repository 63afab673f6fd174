"""Learning from traffic, replayed: serve a stream of recorded requests one at a time with
the routing in force, shadow a sample, and measure each window against the best model.

Pure: :func:`serve` steps a strategy over one request's recorded outcomes exactly as the
tier worker would (paying only for the calls it makes, scoring answers with the parts in
force), and :func:`shadow_models` says which extra calls a shadowed request makes; the
CLI (``tierline bench learning``) keeps the stream, the traffic and the retraining.
The grades (``score``, ``key``) are read only to measure, never by the learner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from tierline.router.evaluation.dataset import Item, Prices, call_usd
from tierline.router.evaluation.replay import grade
from tierline.router.learned.answers import EXTRACTORS
from tierline.router.learned.logistic import logit1
from tierline.router.strategies.basic import Strategy
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView


class Parts(Protocol):
    """What serving reads from a bundle (a trained one, or the stand-ins of
    tierline.router.strategies.agreement)."""

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def extractor(self) -> str: ...

    @property
    def router(self) -> Any: ...

    @property
    def scorer(self) -> Any: ...


@dataclass(frozen=True)
class Served:
    """One request: the models called (in order), what they cost, and whether the accepted
    answer was right (measured, never shown to the learner)."""

    called: tuple[str, ...]
    usd: float
    correct: float


def serve(strategy: Strategy, parts: Parts, item: Item, prices: Prices,
          max_rounds: int = 16) -> Served:
    """Step ``strategy`` over one request's recorded outcomes, as the tier worker would."""
    extract = EXTRACTORS[parts.extractor]
    p = parts.router.predict([item.prompt])[0]
    view = RequestView(item.prompt, {m: float(p[j]) for j, m in enumerate(parts.models)})
    paid: list[Attempt] = []
    usd = 0.0
    for _ in range(max_rounds):
        action = strategy.step(view, paid)
        if isinstance(action, Call):
            fresh = [m for m in action.models if m not in {a.model for a in paid}]
            if not fresh:
                break
            for m in fresh:
                out = item.outcomes[m]
                paid.append(parts.scorer.attempt(m, item.prompt, out.response,
                                                 logit1(view.p_correct.get(m, 0.5)), extract))
                usd += call_usd(out, prices[m])
            continue
        assert isinstance(action, Accept)
        return Served(tuple(a.model for a in paid), usd, _graded(item, action))
    best = paid[-1]  # out of rounds: the last answer paid for
    return Served(tuple(a.model for a in paid), usd,
                  _graded(item, Accept(best.model, best.answer, 0.0)))


def _graded(item: Item, accept: Accept) -> float:
    models = list(item.outcomes)
    return grade(item, np.array([item.outcomes[m].score for m in models]), models, accept)


def retrains_at(k: int, every: int, first: int) -> bool:
    """Whether the stream retrains before its request ``k``: after ``first`` requests,
    then at each doubling while below ``every``, then every ``every`` requests."""
    if k <= 0:
        return False
    if k < every:
        return k >= first and k % first == 0 and (k // first) & (k // first - 1) == 0
    return k % every == 0


def shadow_models(learned: Sequence[str], called: Sequence[str]) -> list[str]:
    """The extra calls of a shadowed request: every model the learner trains on (the top
    tier among them) that the routing did not call already."""
    return [m for m in learned if m not in called]


@dataclass(frozen=True)
class WindowRow:
    """One window of the stream (or ``all`` of it) against the best single model there."""

    window: str
    requests: int
    accuracy: float
    usd: float  # mean per request, shadow calls included
    accuracy_vs_best: float
    cost_vs_best: float
    shadow_usd: float  # mean per request
    best_single: str
    strategy: str  # what routed the window's first request

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def window_row(name: str, items: Sequence[Item], correct: Sequence[float],
               usd: Sequence[float], shadow_usd: Sequence[float], prices: Prices,
               strategy: str) -> WindowRow:
    """Accuracy and cost of a run of requests, as shares of the best single model's there."""
    models = list(items[0].outcomes)
    acc = {m: float(np.mean([it.outcomes[m].score for it in items])) for m in models}
    cost = {m: float(np.mean([call_usd(it.outcomes[m], prices[m]) for it in items]))
            for m in models}
    best = max(models, key=lambda m: (acc[m], -cost[m]))
    accuracy, spent = float(np.mean(correct)), float(np.mean(usd))
    return WindowRow(name, len(items), accuracy, spent,
                     accuracy / acc[best] if acc[best] > 0 else 0.0,
                     spent / cost[best] if cost[best] > 0 else 0.0,
                     float(np.mean(shadow_usd)), best, strategy)
