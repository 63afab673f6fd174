"""The tier worker's work: call the models for a bundle under their token budgets, fall back
on failure, and record it all.

Each round, the calls due go through the absorber first (one ``reserve_many`` per model),
then out concurrently. A call that fails moves its request to the next model of its
fallback chain (the rest of its tier, then cheaper tiers; never pricier), and the next
round sends all such calls together. A budget that cannot take a call now defers it (the
task re-queues it with a countdown) or, if the policy says so, falls back; a request no
budget could ever take fails at once. Every call is one attempt row; the attempts,
charges and results of the whole bundle are written in one transaction.

An answer the provider cut short for low per-token confidence (``strategy.early_stop``) is
paid for what was generated and counts as a weak answer: a cascade climbs a tier as if the
judge had scored it 0; with nowhere to climb it stands, its finish reason in the result's
detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from router.absorber import Reservation
from router.decide import Decision, fallback_chain
from router.early_stop import EARLY_STOP
from router.envelope import Request
from router.errors import DeadlineExceeded
from router.escalation import Judge, escalation_path, judge_for
from router.output_budget import output_cap_for_band
from workers import jobs, records, stepping
from workers.calls import attempt_row, call_round, reserve_round, settle_round
from workers.providers.base import Completion
from workers.records import AttemptRow, Price, ResultRow
from workers.runtime import Runtime


@dataclass
class Outcome:
    """What a bundle came to: how many requests ended, and which wait for budget."""

    finished: int = 0
    deferred: list[str] = field(default_factory=list)
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class _Answer:
    confidence: float
    model: str
    text: str
    finish_reason: str | None


@dataclass
class _Pending:
    request: Request
    chain: list[str]  # models still to try, first is next
    above: list[str]  # more capable models a weak answer escalates to, in order
    seq: int = 0
    best: _Answer | None = None  # the answer judged likeliest right so far

    @property
    def model(self) -> str:
        return self.chain[0]


def prices_of(rt: Runtime) -> dict[str, Price]:
    """The policy's unit prices as exact decimals, by model."""
    return {name: Price(Decimal(str(spec.usd_per_1m_input)), Decimal(str(spec.usd_per_1m_output)))
            for name, spec in rt.policy.models.items()}


def execute(rt: Runtime, request_ids: Sequence[str], now: Callable[[], float] = time.time
            ) -> Outcome:
    """Answer a bundle of routed requests.

    Safe to run twice: requests that already have a result are skipped, and attempt,
    charge and result rows are keyed so a repeat writes nothing new.
    """
    with rt.engine.connect() as conn:
        todo, decided = records.load_routable(conn, request_ids, now())
        jobs_by_request = records.job_of(conn, request_ids)
    caps = rt.policy.strategy.output_caps_by_band
    work = [(replace(r, max_output_tokens=output_cap_for_band(d.band, caps, r.max_output_tokens)),
             d) for r in todo if (d := decided.get(r.id)) is not None]
    outcome = Outcome()
    run = stepping.run if rt.policy.strategy.options.get("bundle") else _run_chains
    attempts, results = run(rt, work, outcome, now)
    with rt.engine.begin() as conn:
        records.record_outcomes(conn, attempts, results, prices_of(rt),
                                {r.id: r for r in todo}, jobs_by_request)
        # Also ends jobs whose window closed: their requests were skipped above.
        jobs.settle(conn, {j for j in jobs_by_request.values() if j}, now())
    outcome.finished = len(results)
    return outcome


def _run_chains(rt: Runtime, work: Sequence[tuple[Request, Decision]], outcome: Outcome,
                now: Callable[[], float]) -> tuple[list[AttemptRow], list[ResultRow]]:
    """The decided model first, falling back along its chain; cascades climb on weak answers."""
    judge = judge_for(rt.policy)
    pending = [_Pending(r, [d.model, *fallback_chain(rt.policy, d.model)],
                        escalation_path(rt.policy, d.model) if judge else [])
               for r, d in work]
    attempts: list[AttemptRow] = []
    results: list[ResultRow] = []
    while pending:
        started = now()
        due, held, retry, waiting, wait_s = _reserve(rt, pending, results, started)
        answers = call_round(rt, [(p.request, p.model) for p in due], started)
        settle_round(rt, held, dict(enumerate(answers)))
        if held:  # this round's settled holds may have made room: try the waiting again
            retry.extend(waiting)
        elif waiting:
            outcome.deferred.extend(p.request.id for p in waiting)
            outcome.retry_after_s = max(outcome.retry_after_s, wait_s)
        for p, answer in zip(due, answers, strict=True):
            attempts.append(attempt_row(rt, p.request, p.seq, p.model, answer, started))
            p.seq += 1
            if isinstance(answer, Completion):
                if _escalates(rt, judge, p, answer):
                    retry.append(p)
                else:
                    results.append(_accepted(p, answer, now()))
            elif p.best is not None and (isinstance(answer, DeadlineExceeded) or len(p.chain) == 1):
                results.append(_result(p.request, p.best, now()))
            elif isinstance(answer, DeadlineExceeded) or len(p.chain) == 1:
                results.append(_failed(p, answer, now()))
            else:
                p.chain.pop(0)
                retry.append(p)
        pending = retry
    return attempts, results


def _reserve(rt: Runtime, pending: list[_Pending], results: list[ResultRow], now_s: float
             ) -> tuple[list[_Pending], dict[int, list[Reservation]], list[_Pending],
                        list[_Pending], float]:
    """Split a round by budget: calls granted (with their holds, by position in ``due``),
    calls moved to another model, calls waiting for room (and how long), refusals failed."""
    budget = reserve_round(rt, [(p.request, p.model) for p in pending], now_s)
    due_positions = budget.due
    due = [pending[i] for i in due_positions]
    held = {due_positions.index(i): res for i, res in budget.granted.items()}
    later: list[_Pending] = []
    waiting: list[_Pending] = []
    blocked = [(i, False) for i in budget.deferred] + [(i, True) for i in budget.refused]
    for i, never in sorted(blocked):
        p = pending[i]
        if len(p.chain) > 1 and (never or rt.policy.failure.on_budget == "fallback"):
            p.chain.pop(0)  # an equal-or-cheaper model with its own budget
            later.append(p)
        elif never:
            results.append(ResultRow(p.request.id, "failed", p.model, None,
                                     f"BudgetExceeded: no budget of {p.model} can ever take "
                                     "this request", now_s))
        else:
            waiting.append(p)
    return due, held, later, waiting, budget.wait_s


def _escalates(rt: Runtime, judge: Judge | None, p: _Pending, answer: Completion) -> bool:
    """Judge the answer; if it is below the bar and a more capable tier exists, move up.

    An early-stopped answer scores 0 whatever it says: the model itself was unsure.
    """
    if answer.finish_reason == EARLY_STOP:
        confidence: float | None = 0.0
    elif judge is None:
        return False
    else:
        confidence = judge(p.request.prompt_text, answer.text)
    if confidence is None:
        return False
    if p.best is None or confidence >= p.best.confidence:
        p.best = _Answer(confidence, p.model, answer.text, answer.finish_reason)
    if confidence >= rt.policy.strategy.confidence_bar or not p.above:
        return False
    nxt = p.above.pop(0)
    # After escalating, a failure falls back within the new tier only: the answers already
    # paid for stand in for everything cheaper.
    p.chain = [nxt, *[m for m in rt.policy.tiers[rt.policy.tier_of(nxt)] if m != nxt]]
    return True


def _accepted(p: _Pending, answer: Completion, now_s: float) -> ResultRow:
    """The final answer: the one judged likeliest right (the latest on ties), else this one.

    A whole answer the judge cannot score still beats one cut short for low confidence.
    """
    best = p.best
    if best is None or (best.finish_reason == EARLY_STOP and answer.finish_reason != EARLY_STOP):
        best = _Answer(1.0, p.model, answer.text, answer.finish_reason)
    return _result(p.request, best, now_s)


def _result(request: Request, answer: _Answer, now_s: float) -> ResultRow:
    """An answered request; a cut-short answer says so in ``detail``."""
    detail = {"finish_reason": EARLY_STOP} if answer.finish_reason == EARLY_STOP else None
    return ResultRow(request.id, "ok", answer.model, answer.text, None, now_s, detail)


def _failed(p: _Pending, error: object, now_s: float) -> ResultRow:
    return ResultRow(p.request.id, "failed", p.model, None, f"{type(error).__name__}: {error}",
                     now_s)
