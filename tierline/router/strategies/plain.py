"""The strategies that need no trained bundle, as step machines: the decided model alone
(``single``), a cascade the free judges climb (``cascade``), a panel asked at once
(``parallel``) and a cascade verified by a panel at its critical tier (``hybrid``).

Each request gets its own machine, built from the router's decision (:func:`plain_machine`):
the decided model is where it starts. The tier worker drives these and the learned ones with
one driver (tierline.workers.engine.drive): budgets, fallbacks, deferrals and the record are
the driver's; which models to ask next and which answer stands are the machine's.

A machine reads its answers by step (:attr:`Attempt.step`): the answers of one :class:`Call`
belong together (a panel's round), whatever failed or fell back before them. When the next
call cannot be made (every model of the step failed and nothing stands in), the driver asks
:meth:`settle` for the answer to end with.

An answer cut short for low per-token confidence (``strategy.early_stop``) scores 0 with the
cascade's judge, so the cascade climbs; it votes in a panel only when every answer was cut
short.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierline.router.live.decide import Decision
from tierline.router.live.early_stop import EARLY_STOP
from tierline.router.live.escalation import Judge, escalation_path, judge_for
from tierline.router.policy import Policy
from tierline.router.strategies.aggregation import Candidate, panel_vote
from tierline.router.strategies.steps import Accept, Action, Attempt, Call, RequestView

EVALUATED = "evaluator"  # decided_by when an evaluator's pick was taken


def capability(policy: Policy, model: str) -> float:
    """How a panel ranks its models: by list price, the pricier taken as the abler."""
    spec = policy.models[model]
    return spec.usd_per_1m_input + spec.usd_per_1m_output


def steps(attempts: Sequence[Attempt]) -> list[list[Attempt]]:
    """The answers grouped by the step that asked for them, in order."""
    grouped: dict[int, list[Attempt]] = {}
    for a in attempts:
        grouped.setdefault(a.step, []).append(a)
    return [grouped[k] for k in sorted(grouped)]


def vote(prompt: str, answered: Sequence[Attempt], capability: Mapping[str, float]
         ) -> tuple[Attempt, list[Attempt], dict[str, Any]]:
    """A panel's answers brought to one by the one vote rule: (the chosen, every answer that
    voted, the votes and how they were decided). A cut-short answer votes only when every
    answer was cut short."""
    whole = [a for a in answered if a.finish_reason != EARLY_STOP] or list(answered)
    verdict = panel_vote(prompt, [Candidate(a.model, a.response, capability.get(a.model, 0.0))
                                  for a in whole])
    return whole[verdict.chosen], whole, {"votes": verdict.votes,
                                          "decided_by": verdict.decided_by,
                                          "answer": verdict.answer}


@dataclass(frozen=True)
class Climb:
    """Ask the route's models one step at a time while the judge finds the answer below
    ``bar``; with no judge (``single``) the first answer stands. At ``panel_at`` the step
    asks ``verify_with`` too, and the vote's pick stands in for that step's answer."""

    route: tuple[str, ...]  # the decided model, then each more capable tier's
    judge: Judge | None = None
    bar: float = 0.5
    panel_at: str | None = None
    verify_with: tuple[str, ...] = ()
    capability: Mapping[str, float] = field(default_factory=dict)
    panel_detail: Mapping[str, Any] = field(default_factory=dict)

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        best: tuple[float, Attempt] | None = None
        done = 0
        for i, lead, confidence, panel in self._walk(request.prompt, attempts):
            done = i + 1
            if confidence is None:  # nothing the judge can check: the answer stands
                return self._accept(best, lead, panel)
            if best is None or confidence >= best[0]:
                best = (confidence, lead)
            if confidence >= self.bar or done == len(self.route):
                return self._accept(best, lead, panel)
        model = self.route[done]
        return Call((model, *self.verify_with) if model == self.panel_at else (model,))

    def settle(self, request: RequestView, attempts: Sequence[Attempt]) -> Accept | None:
        """The answer judged likeliest right so far (the latest on ties), else the last."""
        best: tuple[float, Attempt] | None = None
        votes: dict[str, Any] | None = None
        for _, lead, confidence, panel in self._walk(request.prompt, attempts):
            votes = panel
            if best is None or confidence is None or confidence >= best[0]:
                best = (1.0 if confidence is None else confidence, lead)
        if best is None:
            return None
        return Accept(best[1].model, best[1].answer, best[0], detail=votes)

    def _walk(self, prompt: str, attempts: Sequence[Attempt]
              ) -> Iterator[tuple[int, Attempt, float | None, dict[str, Any] | None]]:
        """Each answered step of the route in order: its answer, the judge's score of it, and
        the panel's votes once the panel was asked."""
        panel: dict[str, Any] | None = None
        for i, answered in enumerate(steps(attempts)[: len(self.route)]):
            lead, panel = self._lead(prompt, self.route[i], answered, panel)
            yield i, lead, self._judged(prompt, lead), panel

    def _lead(self, prompt: str, model: str, answered: Sequence[Attempt],
              panel: dict[str, Any] | None) -> tuple[Attempt, dict[str, Any] | None]:
        """A step's answer (the vote's pick at the panel's step, else its one answer), and
        the panel's votes once it was asked."""
        if model != self.panel_at:
            return answered[0], panel
        chosen, _, votes = vote(prompt, answered, self.capability)
        return chosen, {**self.panel_detail, **votes}

    def _judged(self, prompt: str, lead: Attempt) -> float | None:
        if lead.finish_reason == EARLY_STOP:
            return 0.0  # the model itself was unsure
        return None if self.judge is None else self.judge(prompt, lead.response)

    @staticmethod
    def _accept(best: tuple[float, Attempt] | None, lead: Attempt,
                panel: dict[str, Any] | None) -> Accept:
        """The judged best (the latest on ties), else this answer; a whole answer the judge
        cannot score still beats one cut short."""
        if best is None or (best[1].finish_reason == EARLY_STOP
                            and lead.finish_reason != EARLY_STOP):
            return Accept(lead.model, lead.answer, 1.0, detail=panel)
        return Accept(best[1].model, best[1].answer, best[0], detail=panel)


@dataclass(frozen=True)
class Panel:
    """Ask every model at once, the most capable first; their vote picks the answer (an
    ``evaluator``, when named, has the last word: the driver asks it after the vote)."""

    models: tuple[str, ...]  # most capable first
    capability: Mapping[str, float]
    panel_detail: Mapping[str, Any] = field(default_factory=dict)

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        if not attempts:
            return Call(self.models)
        decided = self.settle(request, attempts)
        assert decided is not None
        return decided

    def settle(self, request: RequestView, attempts: Sequence[Attempt]) -> Accept | None:
        if not attempts:
            return None
        chosen, whole, votes = vote(request.prompt, steps(attempts)[0], self.capability)
        detail = {**self.panel_detail, **votes, "candidates": [a.model for a in whole]}
        return Accept(chosen.model, chosen.answer, 1.0, len(whole) > 1, detail)


def plain_machine(policy: Policy, decision: Decision) -> Climb | Panel:
    """The machine that steps one request of a policy with no trained bundle."""
    strategy = policy.strategy
    o = strategy.options
    prices = {m: capability(policy, m) for m in policy.models}
    if strategy.kind == "parallel":
        listed = tuple(o.get("models") or dict.fromkeys(policy.tiers[t][0]
                                                        for t in policy.tier_names))
        ranked = tuple(sorted(listed, key=lambda m: -prices[m]))
        return Panel(ranked, prices, {"strategy": "parallel", "models": list(listed),
                                      "aggregate": EVALUATED if o.get("evaluator") else "vote"})
    judge = judge_for(policy)
    route = (decision.model, *(escalation_path(policy, decision.model) if judge else ()))
    if strategy.kind != "hybrid":
        return Climb(route, judge, strategy.confidence_bar)
    tier = str(o.get("critical_tier", policy.tier_names[-1]))
    critical = policy.tiers[tier][0]
    verify = tuple(m for m in o.get("verify_with", ()) if m != critical)
    return Climb(route, judge, strategy.confidence_bar, critical, verify, prices,
                 {"strategy": "hybrid", "verified_at": tier, "models": [critical, *verify]})


def evaluator_of(policy: Policy) -> str | None:
    """The model a parallel policy asks to pick among its panel's answers, if any."""
    if policy.strategy.kind != "parallel":
        return None
    evaluator = policy.strategy.options.get("evaluator")
    return str(evaluator) if evaluator else None
