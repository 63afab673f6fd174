"""Tier work for learned strategies: drive the policy's step machine over a bundle.

Each round asks the strategy (:mod:`router.strategies`, built by :mod:`router.live`) what
every unfinished request needs next, makes all those calls at once, scores each response
with the bundle's scorer, and asks again, until every request is accepted. Each call is
one attempt row. A call that fails, or that a token budget cannot take, ends its request
with the best answer already paid for (the judge picks it), or as failed when there is none;
a request whose very first call must wait for budget is deferred whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router.answers import EXTRACTORS
from router.decide import Decision
from router.envelope import Request
from router.judge import router_logit_map
from router.live import views
from router.steps import Accept, Attempt, Call
from workers.calls import attempt_row, call_round, reserve_round, settle_round
from workers.providers.base import Completion
from workers.records import AttemptRow, ResultRow
from workers.runtime import Runtime

if TYPE_CHECKING:
    from workers.execute import Outcome

MAX_ROUNDS = 16


@dataclass
class _State:
    request: Request
    paid: list[Attempt] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # "+"-joined models of each round
    seq: int = 0


def run(rt: Runtime, work: Sequence[tuple[Request, Decision]], outcome: Outcome,
        now: Callable[[], float]) -> tuple[list[AttemptRow], list[ResultRow]]:
    """Step every request of the bundle to an accepted answer."""
    bundle, strategy = rt.learned
    extract = EXTRACTORS[bundle.extractor]
    requests = [r for r, _ in work]
    seen = views(bundle, [r.prompt_text for r in requests], [d.band for _, d in work],
                 [r.max_output_tokens for r in requests])
    states = [_State(r) for r in requests]
    attempts: list[AttemptRow] = []
    results: list[ResultRow] = []
    active = list(range(len(states)))
    for _ in range(MAX_ROUNDS):
        planned: list[tuple[int, str]] = []
        for i in active:
            action = strategy.step(seen[i], states[i].paid)
            called = {a.model for a in states[i].paid}
            fresh = [m for m in action.models if m not in called] if isinstance(action, Call) \
                else []
            if isinstance(action, Accept) or not fresh:
                results.append(_accept(states[i], action, now()))
            else:
                planned += [(i, m) for m in fresh]
                states[i].chain.append("+".join(fresh))
        if not planned:
            break
        started = now()
        budget = reserve_round(rt, [(states[i].request, m) for i, m in planned], started)
        due = budget.due
        answers = dict(zip(due, call_round(
            rt, [(states[planned[k][0]].request, planned[k][1]) for k in due], started),
            strict=True))
        settle_round(rt, budget.granted, answers)
        ended: set[int] = set()
        for k in sorted({*budget.deferred, *budget.refused}):
            i = planned[k][0]
            if not states[i].paid and k in budget.deferred and i not in ended:
                outcome.deferred.append(states[i].request.id)
                outcome.retry_after_s = max(outcome.retry_after_s, budget.wait_s)
                ended.add(i)
        for k, answer in answers.items():
            i, model = planned[k]
            st = states[i]
            attempts.append(attempt_row(rt, st.request, st.seq, model, answer, started))
            st.seq += 1
            if isinstance(answer, Completion):
                logit = router_logit_map(bundle.models, seen[i].p_correct)[model]
                st.paid.append(bundle.scorer.attempt(model, answer.text, logit, extract))
        for k in sorted({*budget.deferred, *budget.refused, *(
                k for k, a in answers.items() if not isinstance(a, Completion))}):
            i = planned[k][0]
            if i in ended:
                continue
            ended.add(i)
            results.append(_best_or_failed(rt, states[i], answers.get(k), now()))
        active = [i for i in {i for i, _ in planned} if i not in ended]
        active.sort()
    return attempts, results


def _accept(st: _State, action: Accept | Call, now_s: float) -> ResultRow:
    """The accepted response, with how it was chosen in ``detail``."""
    if isinstance(action, Call):  # the strategy asked only for calls already made
        best = max(st.paid, key=lambda a: a.evidence)
        action = Accept(best.model, best.answer, 0.0)
    response = next(a.response for a in st.paid if a.model == action.answer_from)
    return ResultRow(st.request.id, "ok", action.answer_from, response, None, now_s, {
        "answer": action.answer, "aggregate": action.aggregate,
        "confidence": round(action.confidence, 6), "chain": st.chain})


def _best_or_failed(rt: Runtime, st: _State, error: object, now_s: float) -> ResultRow:
    """When the next call cannot be made: the judge's best answer so far, else a failure."""
    if st.paid:
        bundle, _ = rt.learned
        best = bundle.judge.candidates(st.paid, {})[0]
        return _accept(st, Accept(best.answer_from, best.answer, best.confidence,
                                  best.aggregate), now_s)
    reason = f"{type(error).__name__}: {error}" if error is not None else \
        "BudgetExceeded: no token budget for the first call"
    return ResultRow(st.request.id, "failed", None, None, reason, now_s)
