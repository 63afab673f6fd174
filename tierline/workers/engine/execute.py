"""The tier worker's work: call the models for a bundle under their token budgets, fall back
on failure, and record it all.

Each round, the calls due go through the absorber first (one ``reserve_many`` per model),
then out concurrently. A call that fails moves its request to the next model of its
fallback chain (the rest of its tier, then cheaper tiers; never pricier), and the next
round sends all such calls together. A budget that cannot take a call now defers it (the
task re-queues it with a countdown) or, if the policy says so, falls back; a request no
budget could ever take fails at once. A model whose expected latency exceeds what is left
of a request's budget (``TooSlow``), or that keeps failing (``CircuitOpen``), is not called
(see tierline.workers.engine.calls): the request falls back as from a failed call, and with
nothing left to
try keeps the best answer it paid for or fails at once rather than at its deadline. A
request whose every model is unavailable, and whose budget leaves time, is deferred and
tried again later instead of failing. Every call is one attempt row; the attempts,
charges and results of the whole bundle are written in one transaction.

A cascade deferred mid-climb keeps the answers it paid for on their attempt rows. When it
comes back it reuses them in place of those calls (no new attempt, charge or token hold),
judged as if just received, so it climbs on from where it stopped.

Kinds ``parallel`` and ``hybrid`` ask a panel of models in one round
(tierline.workers.engine.panel): a
parallel request at its first call, a hybrid one when its cascade reaches the critical
tier. The vote (or the evaluator's pick) stands in for the one answer of that round.

An answer the provider cut short for low per-token confidence (``strategy.early_stop``) is
paid for what was generated and counts as a weak answer: a cascade climbs a tier as if the
judge had scored it 0; with nowhere to climb it stands, its finish reason in the result's
detail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tierline.config.lease import Lease
from tierline.record import ahead, jobs, records
from tierline.record.records import AttemptRow, OnRecord, ResultRow
from tierline.router.envelope import Request
from tierline.router.errors import BudgetExceeded, DeadlineExceeded, Taken, TooSlow
from tierline.router.live.absorber import Reservation
from tierline.router.live.decide import Decision, fallback_chain
from tierline.router.live.deferral import defer_s, expired, expired_reason, waits_at_once
from tierline.router.live.early_stop import EARLY_STOP
from tierline.router.live.escalation import Judge, escalation_path, judge_for
from tierline.router.live.output_budget import output_cap_for_band
from tierline.router.strategies.learned import steps_live
from tierline.workers.engine import panel, shadow, stepping
from tierline.workers.engine.calls import (
    Budgeted,
    attempt_row,
    call_round,
    keeping,
    kept_answer,
    prices_of,
    relayed,
    reserve_round,
    settle_round,
)
from tierline.workers.engine.panel import Asked, PanelPlan
from tierline.workers.engine.relay import end_streams
from tierline.workers.providers.base import Completion
from tierline.workers.providers.fanout import Reply
from tierline.workers.runtime import Runtime
from tierline.workers.transient import TRANSIENT_DB_ERRORS, transient

log = logging.getLogger(__name__)
WRITE_RETRY_FIRST_S = 0.5
WRITE_RETRY_MAX_S = 4.0


@dataclass
class BundleReport:
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
    seq: int  # the attempt that gave it


@dataclass
class _Pending:
    request: Request
    chain: list[str]  # models still to try, first is next
    above: list[str]  # more capable models a weak answer escalates to, in order
    seq: int = 0
    best: _Answer | None = None  # the answer judged likeliest right so far
    verify: list[str] = field(default_factory=list)  # asked with ``model`` this round: a panel
    panel: dict[str, Any] | None = None  # the panel's record (models, votes), once opened
    # Answers paid before a deferral, by model, oldest first (a hybrid's verifier may be
    # a model its cascade called already).
    kept: dict[str, list[Asked]] = field(default_factory=dict)
    paid: dict[int, Completion] = field(default_factory=dict)  # answers of this run, by seq

    @property
    def model(self) -> str:
        return self.chain[0]


def execute(rt: Runtime, request_ids: Sequence[str], now: Callable[[], float] = time.time,
            *, resumed: bool = False) -> BundleReport:
    """Answer a bundle of routed requests.

    Safe to run twice: requests that already have a result are skipped, and attempt,
    charge and result rows are keyed so a repeat writes nothing new. A bundle that comes
    back (``resumed``: after a deferral, a resume or a sweep) numbers its new calls after
    the ones already recorded and reuses the answers kept for it; only then is the lookup
    worth its query.
    """
    lease = rt.settings.lease
    began = now()
    if resumed:  # calls its earlier run made and never recorded: unknown outcome, on record
        with rt.engine.begin() as conn:
            ahead.fold(conn, request_ids=request_ids)
    with rt.engine.connect() as conn:
        todo, decided, jobs_by_request = records.load_bundle(conn, request_ids, began)
        earlier = records.on_record(conn, request_ids) if resumed else {}
    caps = rt.policy.strategy.output_caps_by_band
    # A request whose deadline passed while it waited (in a queue, a deferral, an outage)
    # ends expired, saying when; it is not sent to a model with no time left.
    late = [ResultRow(r.id, "expired", None, None, expired_reason(r.deadline_at), began)
            for r in todo if expired(r.deadline_at, began)]
    work = [(replace(r, max_output_tokens=output_cap_for_band(d.band, caps, r.max_output_tokens)),
             d) for r in todo
            if (d := decided.get(r.id)) is not None and not expired(r.deadline_at, began)]
    outcome = BundleReport()
    if steps_live(rt.policy):  # a step machine
        attempts, results = stepping.run(rt, work, earlier, outcome, now,
                                         began + lease.rounds_s)
    else:
        attempts, results = _run_chains(rt, work, earlier, outcome, now, began + lease.rounds_s)
    results = [*late, *results]
    _write(rt, lease, now, attempts, results, {r.id: r for r in todo}, jobs_by_request, earlier)
    streamed = {r.id for r in todo if relayed(rt, r)}
    end_streams(rt.relay, [row.request_id for row in results if row.request_id in streamed])
    outcome.finished = len(results)
    # Answers recorded and streams ended: a sample of them is shadowed (never fails them).
    shadow.after_bundle(rt, results, {r.id: r for r in todo}, jobs_by_request)
    return outcome


def _write(rt: Runtime, lease: Lease, now: Callable[[], float], attempts: list[AttemptRow],
           results: list[ResultRow], context: dict[str, Request],
           jobs_by_request: dict[str, str | None], earlier: Mapping[str, OnRecord]) -> None:
    """Record the bundle's attempts, charges and results in one transaction, retried through
    a short database outage (the calls are paid: writing them is worth waiting for); past
    the lease's share for writes the error goes up, and the task is retried."""
    gives_up_at = now() + lease.write_s
    wait_s = WRITE_RETRY_FIRST_S
    while True:
        try:
            with rt.engine.begin() as conn:
                records.record_outcomes(conn, attempts, results, prices_of(rt), context,
                                        jobs_by_request, earlier)
                # Also ends jobs whose window closed: their requests were skipped above.
                jobs.settle(conn, {j for j in jobs_by_request.values() if j}, now())
            return
        except TRANSIENT_DB_ERRORS as error:
            if not transient(error) or now() + wait_s > gives_up_at:
                raise
            log.warning("writing a bundle's outcome failed (%s); again in %.1f s",
                        type(error).__name__, wait_s)
            time.sleep(wait_s)
            wait_s = min(2 * wait_s, WRITE_RETRY_MAX_S)


def _start(rt: Runtime, request: Request, decision: Decision, escalates: bool,
           plan: PanelPlan | None) -> _Pending:
    """A request's first round: its decided model, or a parallel strategy's whole panel."""
    if plan is not None and plan.kind == "parallel":
        lead, others, record = panel.open_parallel(rt.policy, plan)
        # If the whole panel fails: the lead's fallback chain, less the models just asked.
        rest = [m for m in fallback_chain(rt.policy, lead) if m not in plan.models]
        return _Pending(request, [lead, *rest], [], verify=others, panel=record)
    return _Pending(request, [decision.model, *fallback_chain(rt.policy, decision.model)],
                    escalation_path(rt.policy, decision.model) if escalates else [])


def _run_chains(rt: Runtime, work: Sequence[tuple[Request, Decision]],
                earlier: Mapping[str, OnRecord], outcome: BundleReport, now: Callable[[], float],
                rounds_until: float = float("inf")
                ) -> tuple[list[AttemptRow], list[ResultRow]]:
    """The decided model first, falling back along its chain; cascades climb on weak answers;
    panels (parallel, hybrid) ask several models in one round and take their vote.

    No round starts after ``rounds_until`` (the lease's share for rounds, tierline.config.lease):
    requests still climbing then are deferred with what they paid for, to go on at once in
    a new message."""
    judge = judge_for(rt.policy)
    plan = panel.plan_of(rt.policy)
    pending = [_start(rt, r, d, judge is not None, plan) for r, d in work]
    for p in pending:
        if (seen := earlier.get(p.request.id)) is not None:
            p.seq = seen.next_seq
            for a in seen.kept:
                p.kept.setdefault(a.model, []).append(Asked(a.model, a.seq, kept_answer(a)))
    keep: dict[tuple[str, int], Completion] = {}  # the answers of requests deferred now
    attempts: list[AttemptRow] = []
    results: list[ResultRow] = []
    awaiting: list[panel.Awaiting] = []  # parallel votes the evaluator has yet to check
    while pending:
        started = now()
        if started > rounds_until:
            outcome.deferred.extend(p.request.id for p in pending)
            keep.update(((p.request.id, seq), c) for p in pending for seq, c in p.paid.items())
            break
        if plan is not None and plan.kind == "hybrid":
            for p in pending:  # the cascade reached the critical step: verify it
                if p.panel is None and p.model == plan.critical_model:
                    p.verify, p.panel = panel.open_hybrid(plan)
        due, held, retry, waiting, wait_s = _reserve(rt, pending, results, started)
        answers = _answers(rt, due, started)
        settle_round(rt, held, dict(enumerate(answers)))
        if held:  # this round's settled holds may have made room: try the waiting again
            retry.extend(waiting)
        elif waiting:
            outcome.deferred.extend(p.request.id for p in waiting)
            outcome.retry_after_s = max(outcome.retry_after_s, wait_s)
            keep.update(((p.request.id, seq), c) for p in waiting for seq, c in p.paid.items())
        for p, calls in _by_request(due, answers):
            asked = []
            for model, answer in calls:
                if model in p.kept:  # paid before its deferral: already recorded
                    asked.append(_reuse(p, model))
                    continue
                if isinstance(answer, Taken):  # not called: another delivery's attempt
                    p.seq += 1
                    continue
                attempts.append(attempt_row(rt, p.request, p.seq, model, answer, started))
                asked.append(Asked(model, p.seq, answer))
                if isinstance(answer, Completion):
                    p.paid[p.seq] = answer
                p.seq += 1
            if any(isinstance(answer, Taken) for _, answer in calls):
                continue  # another delivery is answering it: this one leaves it be
            lead = asked[0]
            if p.verify:  # a panel: its vote stands in for the lead's answer
                p.verify = []
                voted = _panel_vote(rt, plan, p, asked, awaiting)
                if voted is None:
                    continue  # the evaluator has the last word, after this loop
                lead = voted
            if isinstance(lead.outcome, Completion):
                if _escalates(rt, judge, p, lead):
                    retry.append(p)
                else:
                    results.append(_accepted(p, lead, now()))
            elif waits_at_once(lead.outcome, p.request.lane) and (later_s := defer_s(
                    lead.outcome, lane=p.request.lane, tries=p.seq,
                    deadline_at=p.request.deadline_at, now_s=now())) is not None:
                # A rate limit: wait for the window of the model it was routed to, keeping
                # what the request paid for so far.
                outcome.deferred.append(p.request.id)
                outcome.retry_after_s = max(outcome.retry_after_s, later_s)
                keep.update(((p.request.id, seq), c) for seq, c in p.paid.items())
            elif p.best is not None and (_out_of_time(lead.outcome) or len(p.chain) == 1):
                results.append(_result(p, p.best, now()))
            elif _out_of_time(lead.outcome) or len(p.chain) == 1:
                later_s = defer_s(lead.outcome, lane=p.request.lane, tries=p.seq,
                                  deadline_at=p.request.deadline_at, now_s=now())
                if later_s is not None:
                    outcome.deferred.append(p.request.id)  # every model down: try again later
                    outcome.retry_after_s = max(outcome.retry_after_s, later_s)
                    keep.update(((p.request.id, seq), c) for seq, c in p.paid.items())
                else:
                    results.append(_failed(p, asked, started, now()))
            else:
                p.chain.pop(0)
                retry.append(p)
        pending = retry
    if awaiting and plan is not None and plan.evaluator is not None:
        more, picks = panel.evaluate(rt, awaiting, plan.evaluator, now)
        attempts.extend(more)
        results.extend(_picked(w, pick, now()) for w, pick in zip(awaiting, picks, strict=True))
    attempts = keeping(attempts, keep)
    return attempts, panel.with_cost_multipliers(rt, attempts, results, earlier)


def _out_of_time(outcome: Reply) -> bool:
    """Whether a failed call leaves no time for another: a model too slow for what is left
    was not called, so a faster one of the chain may still be."""
    return isinstance(outcome, DeadlineExceeded) and not isinstance(outcome, TooSlow)


def _answers(rt: Runtime, due: list[tuple[_Pending, str]], started: float
             ) -> list[Reply]:
    """Each due call's outcome, in order: the kept answer where there is one, else the
    model's reply, all asked at once."""
    asked = [i for i, (p, model) in enumerate(due) if model not in p.kept]
    # The attempt numbers the calls will be recorded under: each request's next ones, in order.
    seqs: list[int] = []
    given: dict[int, int] = {}
    for i in asked:
        p = due[i][0]
        seqs.append(given.get(id(p), p.seq))
        given[id(p)] = seqs[-1] + 1
    replies = dict(zip(asked, call_round(rt, [(due[i][0].request, due[i][1]) for i in asked],
                                         started, seqs), strict=True))
    return [replies[i] if i in replies else p.kept[model][0].outcome
            for i, (p, model) in enumerate(due)]


def _reuse(p: _Pending, model: str) -> Asked:
    """The oldest answer kept for ``model``, taken: it stands in for this round's call."""
    reused = p.kept[model].pop(0)
    if not p.kept[model]:
        del p.kept[model]
    return reused


def _panel_vote(rt: Runtime, plan: PanelPlan | None, p: _Pending, asked: list[Asked],
                awaiting: list[panel.Awaiting]) -> Asked | None:
    """The call whose answer a panel round gives: the vote's pick, or the lead's failure
    when nothing came back; None when it waits for the evaluator (added to ``awaiting``)."""
    record = p.panel if p.panel is not None else {}
    decided = panel.decide(rt.policy, p.request.prompt_text, asked, record)
    if decided is None:
        return asked[0]
    chosen, answered = decided
    if plan is not None and plan.evaluator is not None and len(answered) > 1:
        awaiting.append(panel.Awaiting(p.request, p.seq, chosen, answered, record))
        return None
    return chosen


def _by_request(due: list[tuple[_Pending, str]], answers: Sequence[Reply]
                ) -> list[tuple[_Pending, list[tuple[str, Reply]]]]:
    """A round's calls grouped by request, in order: its own model first, then verifiers."""
    grouped: list[tuple[_Pending, list[tuple[str, Reply]]]] = []
    for (p, model), answer in zip(due, answers, strict=True):
        if not grouped or grouped[-1][0] is not p:
            grouped.append((p, []))
        grouped[-1][1].append((model, answer))
    return grouped


def _reserve(rt: Runtime, pending: list[_Pending], results: list[ResultRow], now_s: float
             ) -> tuple[list[tuple[_Pending, str]], dict[int, list[Reservation]],
                        list[_Pending], list[_Pending], float]:
    """Split a round by budget: calls granted (with their holds, by position in ``due``),
    requests moved to another model, requests waiting for room (and how long), refusals
    failed. A panel verifier without budget is left out; a request whose own model has
    none waits or moves as a whole, its verifiers' holds given back."""
    planned = [(k, m) for k, p in enumerate(pending) for m in (p.model, *p.verify)]
    budget = _reserve_unkept(rt, [(pending[k], m) for k, m in planned], now_s)
    lead_at: dict[int, int] = {}  # request -> position of its own model's call
    for i, (k, _) in enumerate(planned):
        lead_at.setdefault(k, i)
    blocked = set(budget.deferred) | set(budget.refused)
    stalled = {k for k, i in lead_at.items() if i in blocked}
    freed = [i for i in budget.due if planned[i][0] in stalled]
    given_back = [res for i in freed for res in budget.granted.get(i, [])]
    if given_back:
        rt.absorber.release_many(given_back)
    due_positions = [i for i in budget.due if i not in freed]
    due = [(pending[planned[i][0]], planned[i][1]) for i in due_positions]
    held = {j: budget.granted[i] for j, i in enumerate(due_positions) if i in budget.granted}
    later: list[_Pending] = []
    waiting: list[_Pending] = []
    for i in sorted(blocked):
        k, model = planned[i]
        p = pending[k]
        if i != lead_at[k]:  # a verifier: the panel goes ahead without it
            if k not in stalled:
                p.verify.remove(model)
                (p.panel or {}).setdefault("no_budget", []).append(model)
            continue
        never = i in budget.refused
        # A window that opens only after the deadline is as good as none.
        too_late = not never and defer_s(
            BudgetExceeded("no room now", retry_after_s=budget.wait_s), lane=p.request.lane,
            tries=p.seq, deadline_at=p.request.deadline_at, now_s=now_s) is None
        if len(p.chain) > 1 and (never or too_late
                                 or rt.policy.failure.on_budget == "fallback"):
            p.chain.pop(0)  # an equal-or-cheaper model with its own budget
            if p.verify:  # asked alone: the panel's models stay where the budget holds them
                (p.panel or {}).setdefault("no_budget", []).append(model)
                p.verify = []
            later.append(p)
        elif never:
            results.append(ResultRow(p.request.id, "failed", p.model, None,
                                     f"BudgetExceeded: no budget of {p.model} can ever take "
                                     "this request", now_s, p.panel))
        elif too_late:
            results.append(_out_of_budget(p, budget.wait_s, now_s))
        else:
            waiting.append(p)
    return due, held, later, waiting, budget.wait_s


def _out_of_budget(p: _Pending, wait_s: float, now_s: float) -> ResultRow:
    """A request whose model's budget has no room before its deadline: its best answer so far,
    or a failure saying when the window opens (expired, if the deadline already passed)."""
    if p.best is not None:
        return _result(p, p.best, now_s)
    if expired(p.request.deadline_at, now_s):
        return ResultRow(p.request.id, "expired", p.model, None,
                         expired_reason(p.request.deadline_at), now_s, p.panel)
    return ResultRow(p.request.id, "failed", p.model, None,
                     f"BudgetExceeded: no room in the token budget of {p.model} for "
                     f"{wait_s:.0f} s, past the request's deadline", now_s, p.panel)


def _reserve_unkept(rt: Runtime, planned: list[tuple[_Pending, str]], now_s: float
                    ) -> Budgeted:
    """The budgets' say on a round's calls, by position; a call with a kept answer is paid
    for already and due with no hold."""
    asked = [i for i, (p, model) in enumerate(planned) if model not in p.kept]
    budget = reserve_round(rt, [(planned[i][0].request, planned[i][1]) for i in asked], now_s)
    if len(asked) == len(planned):
        return budget
    kept = [i for i, (p, model) in enumerate(planned) if model in p.kept]
    return Budgeted({asked[j]: held for j, held in budget.granted.items()},
                    [*(asked[j] for j in budget.unlimited), *kept],
                    [asked[j] for j in budget.deferred], [asked[j] for j in budget.refused],
                    budget.wait_s)


def _escalates(rt: Runtime, judge: Judge | None, p: _Pending, lead: Asked) -> bool:
    """Judge the answer; if it is below the bar and a more capable tier exists, move up.

    An early-stopped answer scores 0 whatever it says: the model itself was unsure.
    """
    answer = lead.outcome
    assert isinstance(answer, Completion)
    if answer.finish_reason == EARLY_STOP:
        confidence: float | None = 0.0
    elif judge is None:
        return False
    else:
        confidence = judge(p.request.prompt_text, answer.text)
    if confidence is None:
        return False
    if p.best is None or confidence >= p.best.confidence:
        p.best = _Answer(confidence, lead.model, answer.text, answer.finish_reason, lead.seq)
    if confidence >= rt.policy.strategy.confidence_bar or not p.above:
        return False
    nxt = p.above.pop(0)
    # After escalating, a failure falls back within the new tier only: the answers already
    # paid for stand in for everything cheaper.
    p.chain = [nxt, *[m for m in rt.policy.tiers[rt.policy.tier_of(nxt)] if m != nxt]]
    return True


def _accepted(p: _Pending, lead: Asked, now_s: float) -> ResultRow:
    """The final answer: the one judged likeliest right (the latest on ties), else this one.

    A whole answer the judge cannot score still beats one cut short for low confidence.
    """
    answer = lead.outcome
    assert isinstance(answer, Completion)
    best = p.best
    if best is None or (best.finish_reason == EARLY_STOP and answer.finish_reason != EARLY_STOP):
        best = _Answer(1.0, lead.model, answer.text, answer.finish_reason, lead.seq)
    return _result(p, best, now_s)


def _result(p: _Pending, answer: _Answer, now_s: float) -> ResultRow:
    """An answered request; a cut-short answer says so in ``detail``, a panel how it voted."""
    detail: dict[str, Any] = {}
    if answer.finish_reason == EARLY_STOP:
        detail["finish_reason"] = EARLY_STOP
    if p.panel is not None:
        detail.update(p.panel, chosen_attempt=answer.seq)
    return ResultRow(p.request.id, "ok", answer.model, answer.text, None, now_s, detail or None)


def _picked(w: panel.Awaiting, pick: Asked, now_s: float) -> ResultRow:
    """A parallel request's answer once the evaluator had its say."""
    completion = pick.outcome
    assert isinstance(completion, Completion)
    detail = {**w.detail, "chosen_attempt": pick.seq}
    if completion.finish_reason == EARLY_STOP:
        detail["finish_reason"] = EARLY_STOP
    return ResultRow(w.request.id, "ok", pick.model, completion.text, None, now_s, detail)


def _failed(p: _Pending, asked: Sequence[Asked], started: float, now_s: float) -> ResultRow:
    """A request nothing answered: the error of its last call, or of every panel call; one
    whose deadline had passed before its last round began (or whose call found it passed)
    is expired, whatever its last call met."""
    ran_out = all(type(a.outcome) is DeadlineExceeded for a in asked)
    if expired(p.request.deadline_at, started) or ran_out:
        return ResultRow(p.request.id, "expired", p.model, None,
                         expired_reason(p.request.deadline_at), now_s, p.panel)
    if len(asked) == 1:
        error = f"{type(asked[0].outcome).__name__}: {asked[0].outcome}"
    else:
        error = "no model of the panel answered: " + "; ".join(
            f"{a.model}: {type(a.outcome).__name__}: {a.outcome}" for a in asked)
    return ResultRow(p.request.id, "failed", p.model, None, error, now_s, p.panel)
