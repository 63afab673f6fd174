"""Panels in the tier worker: several models asked for one request in one round, their
answers brought to one (tierline.router.strategies.aggregation), and how, kept for the result's
``detail``.

Kind ``parallel`` asks its panel at a request's first call; ``hybrid`` asks the critical
tier's preferred model together with ``verify_with``. Panel calls go through the tier
worker's ordinary round (tierline.workers.engine.calls: reserve, call, settle), so budgets and
charges work
unchanged and each call is one attempt row. A verifier the budget cannot take now is left
out (named in ``no_budget``) rather than holding the answer back. An ``evaluator``
aggregate asks its model in a second round (:func:`evaluate`); a reply naming no single
response leaves the vote standing, and ``detail`` says why.

``cost_multiplier`` in ``detail``: the request's USD over the USD of the call whose answer
was chosen — what asking the panel cost against asking that model alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from tierline.record.records import AttemptRow, OnRecord, ResultRow
from tierline.router.envelope import Request
from tierline.router.errors import Taken
from tierline.router.live.early_stop import EARLY_STOP
from tierline.router.policy import Policy
from tierline.router.strategies.aggregation import (
    Candidate,
    answer_of,
    evaluator_prompt,
    panel_vote,
    read_pick,
)
from tierline.workers.engine.calls import (
    attempt_row,
    call_round,
    prices_of,
    reserve_round,
    settle_round,
)
from tierline.workers.providers.base import Completion
from tierline.workers.providers.fanout import Reply
from tierline.workers.runtime import Runtime

EVALUATOR_MAX_OUTPUT_TOKENS = 16  # the reply is one number
EVALUATED = "evaluator"  # decided_by when the evaluator's pick was taken


@dataclass(frozen=True)
class PanelPlan:
    """The policy's panel settings, read once per bundle."""

    kind: str  # parallel | hybrid
    models: tuple[str, ...] = ()  # parallel: the panel
    evaluator: str | None = None  # parallel with aggregate 'evaluator'
    critical_tier: str | None = None  # hybrid: where the panel sits
    critical_model: str | None = None  # hybrid: that tier's preferred model
    verify_with: tuple[str, ...] = ()  # hybrid: asked together with the critical model


def plan_of(policy: Policy) -> PanelPlan | None:
    """The panel a bundle-free strategy asks for, or None (single, cascade)."""
    strategy = policy.strategy
    o = strategy.options
    if strategy.kind == "parallel":
        models = tuple(o.get("models") or dict.fromkeys(policy.tiers[t][0]
                                                        for t in policy.tier_names))
        return PanelPlan("parallel", models, evaluator=o.get("evaluator"))
    if strategy.kind == "hybrid":
        tier = str(o.get("critical_tier", policy.tier_names[-1]))
        critical = policy.tiers[tier][0]
        verify = tuple(m for m in o.get("verify_with", ()) if m != critical)
        return PanelPlan("hybrid", critical_tier=tier, critical_model=critical, verify_with=verify)
    return None


def capability(policy: Policy, model: str) -> float:
    """How a panel ranks its models: by list price, the pricier taken as the abler."""
    spec = policy.models[model]
    return spec.usd_per_1m_input + spec.usd_per_1m_output


def open_parallel(policy: Policy, plan: PanelPlan) -> tuple[str, list[str], dict[str, Any]]:
    """A parallel request's first round: its lead model (the panel's most capable; its
    fallback chain is the request's), the others, and the detail to fill."""
    ranked = sorted(plan.models, key=lambda m: -capability(policy, m))
    return ranked[0], ranked[1:], {"strategy": "parallel", "models": list(plan.models),
                                   "aggregate": EVALUATED if plan.evaluator else "vote"}


def open_hybrid(plan: PanelPlan) -> tuple[list[str], dict[str, Any]]:
    """The verifiers joining the critical model's call, and the detail to fill."""
    return list(plan.verify_with), {"strategy": "hybrid", "verified_at": plan.critical_tier,
                                    "models": [plan.critical_model, *plan.verify_with]}


@dataclass(frozen=True)
class Asked:
    """One panel call: the model, its attempt's seq, and what came back."""

    model: str
    seq: int
    outcome: Reply


def decide(policy: Policy, prompt: str, asked: Sequence[Asked], detail: dict[str, Any]
           ) -> tuple[Asked, list[Asked]] | None:
    """The vote over the answers that came back: (the chosen call, every answered call).

    Records failures, votes and how it was decided in ``detail``; None when nothing came
    back. An answer cut short for low confidence votes only when every answer was.
    """
    failed = {a.model: f"{type(a.outcome).__name__}: {a.outcome}" for a in asked
              if not isinstance(a.outcome, Completion)}
    if failed:
        detail["failed"] = failed
    answered = [a for a in asked if isinstance(a.outcome, Completion)]
    if not answered:
        return None
    whole = [a for a in answered if _text(a)[1] != EARLY_STOP] or answered
    verdict = panel_vote(prompt, [Candidate(a.model, _text(a)[0], capability(policy, a.model))
                            for a in whole])
    detail.update(votes=verdict.votes, decided_by=verdict.decided_by, answer=verdict.answer)
    return whole[verdict.chosen], whole


def _text(a: Asked) -> tuple[str, str | None]:
    assert isinstance(a.outcome, Completion)
    return a.outcome.text, a.outcome.finish_reason


@dataclass
class Awaiting:
    """A parallel request whose vote waits for the evaluator's word."""

    request: Request
    seq: int  # the evaluator call's attempt seq
    chosen: Asked  # the vote's pick: it stands if the evaluator names none
    candidates: list[Asked]
    detail: dict[str, Any]


def evaluate(rt: Runtime, waiting: Sequence[Awaiting], evaluator: str,
             now: Callable[[], float]) -> tuple[list[AttemptRow], list[Asked]]:
    """Ask the evaluator model, in one round, for the number of each request's best
    response; the pick per request (the vote's where the evaluator gave none)."""
    started = now()
    asks = [replace(w.request, messages=({"role": "user", "content": evaluator_prompt(
                w.request.prompt_text, [_text(c)[0] for c in w.candidates])},),
                max_output_tokens=min(w.request.max_output_tokens, EVALUATOR_MAX_OUTPUT_TOKENS))
            for w in waiting]
    budget = reserve_round(rt, [(a, evaluator) for a in asks], started)
    due = budget.due
    answers = call_round(rt, [(asks[i], evaluator) for i in due], started,
                         [waiting[i].seq for i in due])
    settle_round(rt, {due.index(i): held for i, held in budget.granted.items()},
                 dict(enumerate(answers)))
    replies = dict(zip(due, answers, strict=True))
    attempts: list[AttemptRow] = []
    picks: list[Asked] = []
    for i, w in enumerate(waiting):
        record: dict[str, Any] = {"model": evaluator}
        pick = None
        reply = replies.get(i)
        if isinstance(reply, Taken):  # another delivery's evaluator call: not ours to record
            reply = None
        if reply is None:
            record["fallback"] = "no budget for the evaluator now: the vote stands"
        else:
            attempts.append(attempt_row(rt, w.request, w.seq, evaluator, reply, started))
            if not isinstance(reply, Completion):
                record["fallback"] = (f"the evaluator failed ({type(reply).__name__}: {reply}): "
                                      "the vote stands")
            else:
                record["reply"] = reply.text[:200]
                pick = read_pick(reply.text, len(w.candidates))
                if pick is None:
                    record["fallback"] = "the reply names no single response: the vote stands"
        w.detail["evaluator"] = record
        if pick is not None:
            record["pick"] = pick + 1
            w.detail.update(decided_by=EVALUATED, answer=answer_of(
                w.request.prompt_text, _text(w.candidates[pick])[0]))
        picks.append(w.candidates[pick] if pick is not None else w.chosen)
    return attempts, picks


def with_cost_multipliers(rt: Runtime, attempts: Sequence[AttemptRow],
                          results: Sequence[ResultRow],
                          earlier: Mapping[str, OnRecord] | None = None) -> list[ResultRow]:
    """Results that name their chosen attempt gain ``cost_multiplier`` in ``detail``: the
    request's USD over that attempt's (None when the chosen call cost nothing). A request
    that came back after a deferral counts what it paid before (``earlier``)."""
    if not any(r.detail is not None and "chosen_attempt" in r.detail for r in results):
        return list(results)  # no panel in this bundle: nothing to price twice
    prices = prices_of(rt)
    earlier = earlier or {}
    kept = [a for seen in earlier.values() for a in seen.kept]
    usd = {(a.request_id, a.seq): prices[a.model].usd(a.tokens_in, a.tokens_out)
           for a in [*kept, *attempts]}
    spent = {request_id: seen.usd for request_id, seen in earlier.items()}
    for a in attempts:
        spent[a.request_id] = spent.get(a.request_id, Decimal(0)) + usd[(a.request_id, a.seq)]
    out = []
    for r in results:
        if r.detail is not None and "chosen_attempt" in r.detail:
            own = usd.get((r.request_id, r.detail["chosen_attempt"]), Decimal(0))
            multiplier = round(float(spent[r.request_id] / own), 4) if own else None
            r = replace(r, detail={**r.detail, "cost_multiplier": multiplier})
        out.append(r)
    return out
