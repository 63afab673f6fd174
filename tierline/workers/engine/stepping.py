"""Tier work for learned strategies: drive the policy's step machine over a bundle.

Each round asks the strategy (:mod:`tierline.router.strategies.basic`, built by
:mod:`tierline.router.strategies.learned`) what
every unfinished request needs next, makes all those calls at once, scores each response
with the bundle's scorer, and asks again, until every request is accepted. Each call is
one attempt row.

When a call cannot be made now, :func:`tierline.router.live.deferral.defer_s` decides, as for every
other strategy. A rate limit (a provider's 429, or a token budget with no room) outside the
realtime lane waits for its window while the request's deadline allows, whether or not the
request has paid for answers already: the deferred request keeps them on their attempt rows
and, when it comes back, hands them to the strategy again instead of paying twice. A rate
limit that does not wait (realtime, or a window that opens past the deadline) serves the
strategy's call by the next equal-or-cheaper model of the called model's fallback chain
(:func:`tierline.router.live.decide.fallback_chain`); with none left the request ends with the
best answer
it paid for, or fails saying why. A request whose first model is down with time to wait is
deferred whole; any other failure ends it with the best answer so far (the judge picks it).

A request's first call of a tier model with a 4-bit variant may go to the variant
(:func:`tierline.router.strategies.learned.first_call`). The strategy keeps the tier model's
name for it, so it
judges and climbs as usual; the attempt row, the scorer and the result name the variant,
and the result's ``detail`` records why (``quantized``: expected quality, bar, budget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tierline.record.records import AttemptRow, OnRecord, ResultRow
from tierline.router.envelope import Request
from tierline.router.errors import BudgetExceeded, DeadlineExceeded, Taken
from tierline.router.learned.answers import EXTRACTORS
from tierline.router.learned.judge import router_logit_map
from tierline.router.live.decide import Decision, fallback_chain
from tierline.router.live.deferral import (
    REALTIME,
    defer_s,
    expired,
    expired_reason,
    rate_limit_wait_s,
)
from tierline.router.live.guard import machine_for
from tierline.router.strategies.learned import first_call, views
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView
from tierline.workers.engine.calls import (
    attempt_row,
    call_round,
    keeping,
    reserve_round,
    settle_round,
)
from tierline.workers.providers.base import Completion
from tierline.workers.runtime import Runtime

if TYPE_CHECKING:
    from tierline.workers.engine.execute import BundleReport

MAX_ROUNDS = 16


@dataclass
class _State:
    request: Request
    paid: list[Attempt] = field(default_factory=list)  # named as the strategy asked for them
    chain: list[str] = field(default_factory=list)  # "+"-joined models called, each round
    seq: int = 0
    served: dict[str, str] = field(default_factory=dict)  # tier model -> its 4-bit variant
    quantized: list[dict[str, Any]] = field(default_factory=list)  # why, per variant consulted
    tried: set[str] = field(default_factory=set)  # models that answered a 429, not to retry
    answers: dict[int, Completion] = field(default_factory=dict)  # paid this run, by seq

    def called(self, model: str) -> str:
        """The model that actually serves the strategy's ``model``."""
        return self.served.get(model, model)


def run(rt: Runtime, work: Sequence[tuple[Request, Decision]], earlier: Mapping[str, OnRecord],
        outcome: BundleReport, now: Callable[[], float], rounds_until: float = float("inf")
        ) -> tuple[list[AttemptRow], list[ResultRow]]:
    """Step every request of the bundle to an accepted answer.

    ``earlier``: what a bundle that comes back already has on record (its numbering goes
    on, the answers kept at its deferral are handed to the strategy again).
    No round starts after ``rounds_until`` (the lease's share for rounds, tierline.config.lease):
    a request still stepping then is deferred with the answers it paid for, to go on at
    once in a new message (as the chains of tierline.workers.engine.execute do)."""
    bundle, strategy = rt.learned
    extract = EXTRACTORS[bundle.extractor]
    requests = [r for r, _ in work]
    seen = views(bundle, [r.prompt_text for r in requests], [d.band for _, d in work],
                 [r.max_output_tokens for r in requests])
    states = []
    for i, r in enumerate(requests):
        on_record = earlier.get(r.id, OnRecord())
        st = _State(r, seq=on_record.next_seq)
        for kept in on_record.kept:  # paid before a deferral: the strategy has them again
            model = _asked_as(rt, kept.model)
            scored_as = kept.model if kept.model in bundle.models else model
            logit = router_logit_map(bundle.models, seen[i].p_correct)[scored_as]
            st.paid.append(replace(bundle.scorer.attempt(
                scored_as, seen[i].prompt, kept.content or "", logit, extract), model=model))
            st.chain.append(kept.model)
            if model != kept.model:
                st.served[model] = kept.model
        states.append(st)
    attempts: list[AttemptRow] = []
    results: list[ResultRow] = []
    active = list(range(len(states)))
    waiting: set[int] = set()  # deferred: what they paid for is kept on its attempt rows
    for _ in range(MAX_ROUNDS):
        if active and now() > rounds_until:
            outcome.deferred.extend(states[i].request.id for i in active)
            waiting.update(active)
            break
        planned: list[tuple[int, str]] = []
        for i in active:
            action = machine_for(rt.policy, strategy, work[i][1]).step(seen[i], states[i].paid)
            called = {a.model for a in states[i].paid}
            fresh = [m for m in action.models if m not in called] if isinstance(action, Call) \
                else []
            if isinstance(action, Accept) or not fresh:
                results.append(_accept(states[i], action, now()))
            else:
                if not states[i].chain:  # the first call: a 4-bit variant may serve it
                    _serve_first(rt, states[i], fresh, seen[i])
                planned += [(i, m) for m in fresh]
                states[i].chain.append("+".join(states[i].called(m) for m in fresh))
        if not planned:
            break
        started = now()
        calls = [(states[i].request, states[i].called(m)) for i, m in planned]
        budget = reserve_round(rt, calls, started)
        due = budget.due
        given: dict[int, int] = {}
        seqs = []
        for k in due:  # the attempt numbers the calls will be recorded under, in order
            i = planned[k][0]
            seqs.append(given.get(i, states[i].seq))
            given[i] = seqs[-1] + 1
        answers = dict(zip(due, call_round(rt, [calls[k] for k in due], started, seqs),
                           strict=True))
        settle_round(rt, budget.granted, answers)
        ended: set[int] = set()
        for k in sorted({*budget.deferred, *budget.refused}):
            i = planned[k][0]
            later_s = defer_s(BudgetExceeded("no room now", retry_after_s=budget.wait_s),
                              lane=states[i].request.lane, tries=states[i].seq,
                              deadline_at=states[i].request.deadline_at, now_s=started)
            # A request that paid waits for a budget's window as a cascade does: off realtime.
            waits = not states[i].paid or states[i].request.lane != REALTIME
            if k in budget.deferred and i not in ended and later_s is not None and waits:
                outcome.deferred.append(states[i].request.id)
                outcome.retry_after_s = max(outcome.retry_after_s, budget.wait_s)
                ended.add(i)
                waiting.add(i)
        for k, answer in answers.items():
            i, model = planned[k]
            st = states[i]
            served = st.called(model)
            if isinstance(answer, Taken):  # not called: another delivery's attempt
                st.seq += 1
                continue
            attempts.append(attempt_row(rt, st.request, st.seq, served, answer, started))
            if isinstance(answer, Completion):
                st.answers[st.seq] = answer
            st.seq += 1
            if isinstance(answer, Completion):
                # Scored as the model that answered when the bundle knows it, then handed to
                # the strategy under the name it asked for.
                scored_as = served if served in bundle.models else model
                logit = router_logit_map(bundle.models, seen[i].p_correct)[scored_as]
                st.paid.append(replace(bundle.scorer.attempt(
                    scored_as, seen[i].prompt, answer.text, logit, extract), model=model))
        for k in sorted({*budget.deferred, *budget.refused, *(
                k for k, a in answers.items() if not isinstance(a, Completion))}):
            i, model = planned[k]
            if i in ended:
                continue
            st = states[i]
            failure = answers.get(k)
            if isinstance(failure, Taken):  # another delivery is answering it: left to it
                ended.add(i)
                continue
            limited = rate_limit_wait_s(failure) is not None
            # A rate limit waits for its window (paid or not); an outage only before any pay.
            wait_s = defer_s(failure, lane=st.request.lane, tries=st.seq,
                             deadline_at=st.request.deadline_at, now_s=now()) \
                if limited or not st.paid else None
            if wait_s is not None:
                ended.add(i)
                waiting.add(i)
                outcome.deferred.append(st.request.id)
                outcome.retry_after_s = max(outcome.retry_after_s, wait_s)
            elif limited and (other := _stand_in(rt, st, model)) is not None:
                st.served[model] = other  # the request steps on, its call served by it
            else:
                ended.add(i)
                results.append(_best_or_failed(rt, st, failure, started, now()))
        active = sorted(i for i in {i for i, _ in planned} if i not in ended)
    keep = {(states[i].request.id, seq): c for i in waiting
            for seq, c in states[i].answers.items()}
    return keeping(attempts, keep), results


def _stand_in(rt: Runtime, st: _State, model: str) -> str | None:
    """The model to serve the strategy's ``model`` after the one serving it answered a 429:
    the next of its fallback chain (equal or cheaper) neither rate limited nor already paid
    for by this request, or None."""
    limited = st.called(model)
    st.tried.add(limited)
    paid = {st.called(a.model) for a in st.paid}
    return next((m for m in fallback_chain(rt.policy, limited)
                 if m not in st.tried and m not in paid), None)


def _asked_as(rt: Runtime, served: str) -> str:
    """The model the strategy asked for when ``served`` answered: the full model of a
    4-bit variant, else itself."""
    return next((name for name, spec in rt.policy.models.items()
                 if spec.quantized is not None and spec.quantized.model == served), served)


def _serve_first(rt: Runtime, st: _State, models: Sequence[str], view: RequestView) -> None:
    """Apply the quantization rule to the models of a request's first call."""
    for model in models:
        choice = first_call(rt.policy, model, view)
        if choice.reason is not None:
            st.quantized.append({"model": model, **choice.reason})
        if choice.model != model and choice.model not in models:
            st.served[model] = choice.model


def _accept(st: _State, action: Accept | Call, now_s: float) -> ResultRow:
    """The accepted response, with how it was chosen in ``detail``."""
    if isinstance(action, Call):  # the strategy asked only for calls already made
        best = max(st.paid, key=lambda a: a.evidence)
        action = Accept(best.model, best.answer, 0.0)
    response = next(a.response for a in st.paid if a.model == action.answer_from)
    detail: dict[str, Any] = {
        "answer": action.answer, "aggregate": action.aggregate,
        "confidence": round(action.confidence, 6), "chain": st.chain}
    if st.quantized:
        detail["quantized"] = st.quantized
    return ResultRow(st.request.id, "ok", st.called(action.answer_from), response, None, now_s,
                     detail)


def _best_or_failed(rt: Runtime, st: _State, error: object, started: float, now_s: float
                    ) -> ResultRow:
    """When the next call cannot be made: the judge's best answer so far, else a failure."""
    if st.paid:
        bundle, _ = rt.learned
        best = bundle.judge.candidates(st.paid, {})[0]
        return _accept(st, Accept(best.answer_from, best.answer, best.confidence,
                                  best.aggregate), now_s)
    if expired(st.request.deadline_at, started) or type(error) is DeadlineExceeded:
        return ResultRow(st.request.id, "expired", None, None,
                         expired_reason(st.request.deadline_at), now_s)
    reason = f"{type(error).__name__}: {error}" if error is not None else \
        "BudgetExceeded: no token budget for the first call"
    return ResultRow(st.request.id, "failed", None, None, reason, now_s)
