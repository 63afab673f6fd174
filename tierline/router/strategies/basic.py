"""Routing strategies as pure step machines, the same code offline (replay) and live.

A strategy reads the request view (prompt, learned estimates, band) and the attempts paid
for so far, and returns the next action: :class:`Call` some models, or :class:`Accept` an
answer. A tier worker drives it live; :mod:`tierline.router.evaluation.methods` drives it over
recorded
outcomes. ``STRATEGIES`` maps a policy's ``strategy.kind`` to a class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tierline.router.learned.judge import Candidate, router_logit_map
from tierline.router.strategies.aggregation import majority
from tierline.router.strategies.steps import Accept, Action, Attempt, Call, RequestView


class Strategy(Protocol):
    """Given a request and what was paid for, the next action."""

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action: ...


class JudgeLike(Protocol):
    """Scores the candidate answers of a state (see :mod:`tierline.router.learned.judge`)."""

    def candidates(self, attempts: Sequence[Attempt],
                   router_logits: Mapping[str, float]) -> list[Candidate]: ...


def _accept(c: Candidate) -> Accept:
    return Accept(c.answer_from, c.answer, c.confidence, c.aggregate)


def vote(attempts: Sequence[Attempt], p_correct: Mapping[str, float],
         usd_per_call: Mapping[str, float]) -> Accept:
    """Majority over extracted answers by the one vote rule
    (:func:`tierline.router.strategies.aggregation.
    majority`): ties go to the likelier, then the pricier, supporter.

    The returned response is one supporter's own (the strongest), so a recorded-score grader
    can grade it. With no extractable answer at all, the strongest model's response is used.
    """
    found = majority([a.answer for a in attempts],
                     [(p_correct.get(a.model, 0.0), usd_per_call.get(a.model, 0.0))
                      for a in attempts])
    chosen = attempts[found.chosen]
    if found.answer is None:
        return Accept(chosen.model, None, 0.0, False)
    return Accept(chosen.model, found.answer, len(found.groups[found.answer]) / len(attempts),
                  len(attempts) > 1)


@dataclass(frozen=True)
class SingleModel:
    """Always one model: the per-model baselines."""

    model: str

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call((self.model,))
        return Accept(self.model, attempts[0].answer, 1.0)


def pick_model(models: Sequence[str], p_correct: Mapping[str, float],
               usd_per_call: Mapping[str, float], bar: float | None = None,
               cost_weight: float | None = None) -> str:
    """Cheapest model whose P(correct) clears ``bar``; or the max of P - weight x cost share."""
    by_price = sorted(models, key=lambda m: usd_per_call[m])
    if cost_weight is not None:
        top = max(usd_per_call[m] for m in models) or 1.0
        return max(by_price, key=lambda m: p_correct[m] - cost_weight * usd_per_call[m] / top)
    for m in by_price:
        if bar is not None and p_correct[m] >= bar:
            return m
    return max(by_price, key=lambda m: p_correct[m])


@dataclass(frozen=True)
class LearnedPick:
    """Single shot: the learned router's pick, by a probability bar or a cost weight."""

    models: tuple[str, ...]
    usd_per_call: Mapping[str, float]
    bar: float | None = None
    cost_weight: float | None = None

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call((pick_model(self.models, request.p_correct, self.usd_per_call,
                                    self.bar, self.cost_weight),))
        return Accept(attempts[0].model, attempts[0].answer, request.p_correct[attempts[0].model])


@dataclass(frozen=True)
class TwoModelThreshold:
    """RouteLLM-style: the weak model when P(weak is enough), read as ``p_correct[weak]``,
    clears the threshold; else the strong one."""

    weak: str
    strong: str
    threshold: float

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        chosen = self.weak if request.p_correct[self.weak] >= self.threshold else self.strong
        return SingleModel(chosen).step(request, attempts)


@dataclass(frozen=True)
class BandRoute:
    """Single shot by complexity band: the article's composite estimator feeds ``band``."""

    band_models: Mapping[str, str]

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call((self.band_models[request.band],))
        return Accept(attempts[0].model, attempts[0].answer, 1.0)


@dataclass(frozen=True)
class Parallel:
    """Ask every model at once; majority vote (or the judge) picks the answer."""

    models: tuple[str, ...]
    usd_per_call: Mapping[str, float]
    judge: JudgeLike | None = None

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call(self.models)
        if self.judge is not None:
            logits = router_logit_map(self.models, request.p_correct)
            return _accept(self.judge.candidates(attempts, logits)[0])
        return vote(attempts, request.p_correct, self.usd_per_call)


@dataclass(frozen=True)
class Cascade:
    """Climb the tiers while the judge's best candidate is below ``bar``.

    ``start_bar``: start at the first tier whose learned P(correct) clears it (else the top).
    ``skip_bar``: skip middle tiers whose learned P(correct) is below it.
    ``verify_with``: hybrid — models asked in parallel with the last tier (the critical step).
    """

    tiers: tuple[str, ...]  # one model per tier, cheapest first
    judge: JudgeLike
    bar: float
    start_bar: float | None = None
    skip_bar: float | None = None
    verify_with: tuple[str, ...] = field(default=())

    def route(self, request: RequestView) -> list[str]:
        """The tiers this request may visit, in order."""
        p = request.p_correct
        start = 0
        if self.start_bar is not None:
            clears = [i for i, m in enumerate(self.tiers) if p[m] >= self.start_bar]
            start = clears[0] if clears else len(self.tiers) - 1
        route = list(self.tiers[start:])
        if self.skip_bar is not None and len(route) > 2:
            middle = [m for m in route[1:-1] if p[m] >= self.skip_bar]
            route = [route[0], *middle, route[-1]]
        return route

    def _call(self, model: str, route: list[str], called: set[str]) -> Call:
        extra = self.verify_with if model == route[-1] else ()
        return Call(tuple(m for m in (model, *extra) if m not in called))

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        route = self.route(request)
        if not attempts:
            return self._call(route[0], route, set())
        called = {a.model for a in attempts}
        best = self.judge.candidates(attempts, router_logit_map(self.tiers, request.p_correct))[0]
        visited = [i for i, m in enumerate(route) if m in called]
        nxt = route[max(visited) + 1] if visited and max(visited) + 1 < len(route) else None
        if best.confidence >= self.bar or nxt is None:
            return _accept(best)
        return self._call(nxt, route, called)


STRATEGIES: dict[str, type] = {
    "single": SingleModel,
    "learned": LearnedPick,
    "band": BandRoute,
    "threshold": TwoModelThreshold,
    "parallel": Parallel,
    "cascade": Cascade,
    "hybrid": Cascade,  # a cascade with ``verify_with`` at the critical (last) step
}
