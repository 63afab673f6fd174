"""The tier worker's one driver: every strategy is a step machine, and this module steps a
bundle's requests through theirs.

Each round asks every unfinished request's machine (tierline.router.strategies: the plain
ones of ``plain`` without a bundle, the learned ones with one, ``agreement`` with neither)
for its next action, makes all the calls at once under the token budgets, hands the answers
back, and asks again, until every request is answered, failed with a reason, or deferred.
Each call is one attempt row. What happens when a call cannot be made is decided here, the
same for every strategy:

- **Budgets.** A round's lead call (the first model of a :class:`Call`) the budget cannot
  take now waits for room (tried again in this run when the round freed holds, else
  deferred); with ``failure.on_budget: fallback``, or when no room opens before the deadline,
  or never, it is served by a stand-in instead (below). Another call without room is left
  out of the round (``no_budget`` in a panel's detail).
- **Rate limits wait.** A provider's 429 on any call of a standard or batch request defers
  the request to the window's opening while its deadline allows
  (:func:`tierline.router.live.deferral.defer_s`), keeping the answers it paid for.
- **Fallback.** When no call of a round answered, the lead's model is served by a stand-in:
  the next model of its fallback chain (:func:`tierline.router.live.decide.fallback_chain`:
  equal or cheaper) that has neither failed nor answered this request. The machine keeps
  asking by the name it chose; the attempt and the result
  name the model that answered. A failure in a round where another call answered leaves the
  machine to go on with what it has (``failed`` in a panel's detail).
- **Nothing left.** With no stand-in, a request that has answers ends with the one the
  machine settles on; one with none waits while every model is down
  (:mod:`tierline.router.live.breaker`), or fails naming why (expired past its deadline).

A request deferred with answers keeps them on their attempt rows; when it comes back, a call
its machine asks of a model it paid before takes that answer instead of paying again.
A call whose attempt id another delivery holds (:class:`Taken`) is not made, and its request
is left to that delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tierline.record.records import AttemptRow, OnRecord, ResultRow
from tierline.router.envelope import Request
from tierline.router.errors import BudgetExceeded, DeadlineExceeded, Taken, TooSlow
from tierline.router.learned.answers import EXTRACTORS
from tierline.router.learned.judge import router_logit_map
from tierline.router.live.decide import Decision, fallback_chain
from tierline.router.live.deferral import defer_s, expired, expired_reason, waits_at_once
from tierline.router.live.early_stop import EARLY_STOP
from tierline.router.live.guard import machine_for
from tierline.router.strategies.basic import Strategy
from tierline.router.strategies.learned import first_call, steps_live, views
from tierline.router.strategies.plain import evaluator_of, plain_machine
from tierline.router.strategies.steps import Accept, Attempt, RequestView
from tierline.workers.engine import panel
from tierline.workers.engine.calls import (
    attempt_row,
    call_round,
    keeping,
    kept_answer,
    reserve_round,
    settle_round,
)
from tierline.workers.engine.panel import Asked
from tierline.workers.providers.base import Completion
from tierline.workers.providers.fanout import Reply
from tierline.workers.runtime import Runtime

if TYPE_CHECKING:
    from tierline.workers.engine.execute import BundleReport

MAX_ROUNDS = 16  # a request still stepping after this many rounds goes on in a new message


@dataclass
class _State:
    request: Request
    machine: Strategy
    view: RequestView
    seq: int  # the next attempt's number
    kept: dict[str, list[Asked]]  # answers paid before a deferral, by model, oldest first
    paid: list[Attempt] = field(default_factory=list)  # named as the machine asked for them
    got: dict[str, Asked] = field(default_factory=dict)  # asked model -> its latest answer
    step: int = 0  # the machine's calls acted on
    served: dict[str, str] = field(default_factory=dict)  # asked model -> who serves it
    tried: set[str] = field(default_factory=set)  # models that failed it, not asked again
    answers: dict[int, Completion] = field(default_factory=dict)  # paid this run, by seq
    chain: list[str] = field(default_factory=list)  # "+"-joined models called, each round
    quantized: list[dict[str, Any]] = field(default_factory=list)  # 4-bit choices, and why
    notes: dict[str, Any] = field(default_factory=dict)  # a panel's failed and no_budget

    def called(self, model: str) -> str:
        """The model that serves the machine's ``model``."""
        return self.served.get(model, model)


@dataclass
class _Run:
    """What one bundle's rounds collect."""

    rt: Runtime
    outcome: BundleReport
    now: Callable[[], float]
    learned: Any  # the trained bundle (or the untrained parts) and its machine, or None
    attempts: list[AttemptRow] = field(default_factory=list)
    results: list[ResultRow] = field(default_factory=list)
    deferred: list[_State] = field(default_factory=list)
    awaiting: list[panel.Awaiting] = field(default_factory=list)

    def defer(self, st: _State, wait_s: float) -> None:
        self.outcome.deferred.append(st.request.id)
        self.outcome.retry_after_s = max(self.outcome.retry_after_s, wait_s)
        self.deferred.append(st)


def run(rt: Runtime, work: Sequence[tuple[Request, Decision]], earlier: Mapping[str, OnRecord],
        outcome: BundleReport, now: Callable[[], float], rounds_until: float = float("inf")
        ) -> tuple[list[AttemptRow], list[ResultRow]]:
    """Step every request of the bundle to its end, or to a deferral.

    ``earlier``: what a bundle that comes back already has on record (its numbering goes
    on, the answers kept at its deferral stand in for the calls that bought them).
    No round starts after ``rounds_until`` (the lease's share for rounds,
    tierline.config.lease): a request still stepping then is deferred with the answers it
    paid for, to go on at once in a new message."""
    # Read once: a promoted bundle may change while the bundle runs.
    r = _Run(rt, outcome, now, rt.learned if steps_live(rt.policy) else None)
    active = _states(rt, work, earlier, r.learned)
    for _ in range(MAX_ROUNDS):
        if not active:
            break
        if now() > rounds_until:
            break
        planned: list[tuple[_State, list[str]]] = []
        for st in active:
            action = st.machine.step(st.view, st.paid)
            models = [] if isinstance(action, Accept) else [
                m for m in dict.fromkeys(action.models) if st.called(m) not in st.tried]
            if isinstance(action, Accept):
                _answered(r, st, action)
            elif not models:  # nothing left to ask: the machine's best answer stands
                _settle(r, st, None, now())
            else:
                if r.learned is not None and not st.chain:  # a 4-bit variant may serve
                    _serve_first(rt, st, models)  # the first call
                st.chain.append("+".join(st.called(m) for m in models))
                planned.append((st, models))
        active = _round(r, planned) if planned else []
    for st in active:  # out of rounds: on at once in a new message, answers kept
        r.defer(st, 0.0)
    evaluator = evaluator_of(rt.policy)
    if r.awaiting and evaluator is not None:
        more, picks = panel.evaluate(rt, r.awaiting, evaluator, now)
        r.attempts.extend(more)
        r.results.extend(_picked(w, pick, now()) for w, pick in zip(r.awaiting, picks,
                                                                    strict=True))
    keep = {(st.request.id, seq): c for st in r.deferred for seq, c in st.answers.items()}
    attempts = keeping(r.attempts, keep)
    return attempts, panel.with_cost_multipliers(rt, attempts, r.results, earlier)


def _states(rt: Runtime, work: Sequence[tuple[Request, Decision]],
            earlier: Mapping[str, OnRecord], learned: Any) -> list[_State]:
    """Each request's machine and view, numbering and kept answers."""
    requests = [r for r, _ in work]
    if learned is not None:
        bundle, strategy = learned
        seen = views(bundle, [r.prompt_text for r in requests], [d.band for _, d in work],
                     [r.max_output_tokens for r in requests])
        machines = [machine_for(rt.policy, strategy, d) for _, d in work]
    else:
        seen = [RequestView(r.prompt_text, {}, d.band, r.max_output_tokens) for r, d in work]
        machines = [plain_machine(rt.policy, d) for _, d in work]
    states = []
    for request, machine, view in zip(requests, machines, seen, strict=True):
        on_record = earlier.get(request.id, OnRecord())
        kept: dict[str, list[Asked]] = {}
        for a in on_record.kept:
            kept.setdefault(a.model, []).append(Asked(a.model, a.seq, kept_answer(a)))
        states.append(_State(request, machine, view, on_record.next_seq, kept))
    return states


def _round(r: _Run, planned: list[tuple[_State, list[str]]]) -> list[_State]:
    """One round: budgets, the calls at once, each request's answers handed back; returns
    the requests still stepping."""
    rt = r.rt
    started = r.now()
    calls = [(st, m) for st, models in planned for m in models]
    leads = {id(st): k for k, (st, _) in reversed(list(enumerate(calls)))}
    fresh = [k for k, (st, m) in enumerate(calls) if st.called(m) not in st.kept]
    budget = reserve_round(rt, [(calls[k][0].request, calls[k][0].called(calls[k][1]))
                                for k in fresh], started)
    held = {fresh[j]: h for j, h in budget.granted.items()}
    refused = {fresh[j] for j in budget.refused}
    blocked = refused | {fresh[j] for j in budget.deferred}
    stalled = {id(st) for st, _ in planned if leads[id(st)] in blocked}
    given_back = [res for k in list(held) if id(calls[k][0]) in stalled for res in held.pop(k)]
    if given_back:  # a lead without budget: the others of its round wait with it
        rt.absorber.release_many(given_back)
    due = [k for k in range(len(calls)) if k not in blocked and id(calls[k][0]) not in stalled]
    asked = set(fresh)
    to_call = [k for k in due if k in asked]
    seqs: list[int] = []
    numbered: dict[int, int] = {}
    for k in to_call:  # the attempt numbers the calls will be recorded under, in order
        st = calls[k][0]
        seqs.append(numbered.get(id(st), st.seq))
        numbered[id(st)] = seqs[-1] + 1
    replies = call_round(rt, [(calls[k][0].request, calls[k][0].called(calls[k][1]))
                              for k in to_call], started, seqs)
    settle_round(rt, {j: held[k] for j, k in enumerate(to_call) if k in held},
                 dict(enumerate(replies)))
    came: dict[int, Reply] = dict(zip(to_call, replies, strict=True))
    reused: dict[int, Asked] = {}
    for k in due:
        if k not in came:  # paid before its deferral: the kept answer stands in
            st, m = calls[k]
            reused[k] = _take_kept(st, st.called(m))
    going: list[_State] = []
    waiting: list[_State] = []
    for st, models in planned:
        ks = [leads[id(st)] + i for i in range(len(models))]
        if id(st) in stalled:
            _no_budget(r, st, models[0], leads[id(st)] in refused, budget.wait_s, started,
                       going, waiting)
            continue
        for k in ks:
            if k in blocked:
                st.notes.setdefault("no_budget", []).append(st.called(calls[k][1]))
        if _handed_back(r, st, [(calls[k][1], came.get(k), reused.get(k)) for k in ks
                                if k in due], started):
            going.append(st)
    if held:  # this round's settled holds may have made room: the waiting try again
        going.extend(waiting)
    else:
        for st in waiting:
            r.defer(st, budget.wait_s)
    return going


def _take_kept(st: _State, model: str) -> Asked:
    """The oldest answer kept for ``model``, taken: it stands in for this round's call."""
    reused = st.kept[model].pop(0)
    if not st.kept[model]:
        del st.kept[model]
    return reused


def _handed_back(r: _Run, st: _State, round_: list[tuple[str, Reply | None, Asked | None]],
                 started: float) -> bool:
    """Record a request's calls of this round and hand its answers to the machine; True
    while it steps on."""
    taken = any(isinstance(reply, Taken) for _, reply, _ in round_)
    failed: list[tuple[str, Reply]] = []
    for model, reply, reused in round_:
        served = st.called(model)
        if reused is not None:
            _hand(r, st, model, reused)
            continue
        assert reply is not None
        if isinstance(reply, Taken):  # not called: another delivery's attempt
            st.seq += 1
            continue
        r.attempts.append(attempt_row(r.rt, st.request, st.seq, served, reply, started))
        if isinstance(reply, Completion):
            st.answers[st.seq] = reply
            _hand(r, st, model, Asked(served, st.seq, reply))
        else:
            failed.append((served, reply))
        st.seq += 1
    if taken:  # another delivery is answering it: left to that one
        return False
    st.step += 1
    if len(round_) > 1 and failed:  # a panel: who failed, in its detail
        st.notes.setdefault("failed", {}).update(
            {m: f"{type(e).__name__}: {e}" for m, e in failed})
    lane, deadline = st.request.lane, st.request.deadline_at
    for _, reply in failed:  # a rate limit waits for its window, answers kept
        if waits_at_once(reply, lane) and (wait_s := defer_s(
                reply, lane=lane, tries=st.seq, deadline_at=deadline, now_s=r.now())) is not None:
            r.defer(st, wait_s)
            return False
    if len(failed) < len(round_):
        return True
    st.tried.update(m for m, _ in failed)
    lead = failed[0][1]
    out_of_time = isinstance(lead, DeadlineExceeded) and not isinstance(lead, TooSlow)
    if not out_of_time and (other := _stand_in(r.rt, st, round_[0][0])) is not None:
        st.served[round_[0][0]] = other
        return True
    if st.paid:
        _settle(r, st, None, r.now())
        return False
    wait_s = defer_s(lead, lane=lane, tries=st.seq, deadline_at=deadline, now_s=r.now())
    if wait_s is not None:  # every model down: tried again later
        r.defer(st, wait_s)
    else:
        r.results.append(_failed(st, failed, started, r.now()))
    return False


def _hand(r: _Run, st: _State, model: str, asked: Asked) -> None:
    """An answer to the machine, named as it asked, scored as who answered it."""
    completion = asked.outcome
    assert isinstance(completion, Completion)
    st.got[model] = asked
    if r.learned is None:
        st.paid.append(Attempt(model, completion.text, None, 0.0, st.step,
                               completion.finish_reason))
        return
    bundle, _ = r.learned
    scored_as = asked.model if asked.model in bundle.models else model
    logit = router_logit_map(bundle.models, st.view.p_correct)[scored_as]
    scored = bundle.scorer.attempt(scored_as, st.view.prompt, completion.text, logit,
                                   EXTRACTORS[bundle.extractor])
    st.paid.append(replace(scored, model=model, step=st.step,
                           finish_reason=completion.finish_reason))


def _no_budget(r: _Run, st: _State, lead: str, never: bool, wait_s: float, now_s: float,
               going: list[_State], waiting: list[_State]) -> None:
    """A round whose lead call the budget cannot take now: a stand-in, a wait, or the end."""
    policy = r.rt.policy
    # A window that opens only after the deadline is as good as none.
    too_late = not never and defer_s(
        BudgetExceeded("no room now", retry_after_s=wait_s), lane=st.request.lane,
        tries=st.seq, deadline_at=st.request.deadline_at, now_s=now_s) is None
    if never or too_late or policy.failure.on_budget == "fallback":
        served = st.called(lead)
        other = _stand_in(r.rt, st, lead)
        if other is not None:  # an equal-or-cheaper model with its own budget
            st.served[lead] = other
            st.notes.setdefault("no_budget", []).append(served)
            going.append(st)
            return
        if never:
            r.results.append(ResultRow(st.request.id, "failed", served, None,
                                       f"BudgetExceeded: no budget of {served} can ever take "
                                       "this request", now_s))
            return
    if too_late or never:
        _settle(r, st, f"BudgetExceeded: no room in the token budget of {st.called(lead)} for "
                       f"{wait_s:.0f} s, past the request's deadline", now_s)
    else:
        waiting.append(st)


def _stand_in(rt: Runtime, st: _State, model: str) -> str | None:
    """Who serves the machine's ``model`` after the one serving it could not: the next of
    its fallback chain (equal or cheaper) that has neither failed nor answered this
    request."""
    served = st.called(model)
    st.tried.add(served)
    answered = {a.model for a in st.got.values()}
    return next((m for m in fallback_chain(rt.policy, served)
                 if m not in st.tried and m not in answered), None)


def _serve_first(rt: Runtime, st: _State, models: Sequence[str]) -> None:
    """Apply the quantization rule to the models of a request's first call."""
    for model in models:
        choice = first_call(rt.policy, model, st.view)
        if choice.reason is not None:
            st.quantized.append({"model": model, **choice.reason})
        if choice.model != model and choice.model not in models:
            st.served[model] = choice.model


def _settle(r: _Run, st: _State, reason: str | None, now_s: float) -> None:
    """End a request whose next call cannot be made: the answer its machine settles on (a
    learned machine's: its judge's best), else a failure saying why (expired, past its
    deadline)."""
    accept = _settled(r, st)
    if accept is not None:
        _answered(r, st, accept)
    elif expired(st.request.deadline_at, now_s):
        r.results.append(ResultRow(st.request.id, "expired", None, None,
                                   expired_reason(st.request.deadline_at), now_s))
    else:
        r.results.append(ResultRow(st.request.id, "failed", None, None,
                                   reason or "nothing left to ask", now_s))


def _settled(r: _Run, st: _State) -> Accept | None:
    if not st.paid:
        return None
    settle = getattr(st.machine, "settle", None)
    if settle is not None:
        accept: Accept | None = settle(st.view, st.paid)
        return accept
    judge = getattr(r.learned[0], "judge", None)
    if judge is not None:
        best = judge.candidates(st.paid, {})[0]
        return Accept(best.answer_from, best.answer, best.confidence, best.aggregate)
    i = max(range(len(st.paid)), key=lambda i: (st.paid[i].evidence, i))
    return Accept(st.paid[i].model, st.paid[i].answer, 0.0)


def _answered(r: _Run, st: _State, accept: Accept) -> None:
    """The accepted answer as a result, with how it was chosen in ``detail``; a panel with
    an evaluator waits for its pick first."""
    got = st.got[accept.answer_from]
    completion = got.outcome
    assert isinstance(completion, Completion)
    now_s = r.now()
    detail: dict[str, Any] = {}
    if r.learned is not None:
        detail = {"answer": accept.answer, "aggregate": accept.aggregate,
                  "confidence": round(accept.confidence, 6), "chain": st.chain}
        if st.quantized:
            detail["quantized"] = st.quantized
    elif accept.detail is not None:  # a panel's votes, failures and chosen call
        detail = {**accept.detail, **st.notes, "chosen_attempt": got.seq}
        detail["votes"] = {a: [st.called(m) for m in ms] for a, ms in detail["votes"].items()}
        candidates = [st.got[m] for m in detail.pop("candidates", ())]
        if len(candidates) > 1 and evaluator_of(r.rt.policy) is not None:
            r.awaiting.append(panel.Awaiting(st.request, st.seq, got, candidates, detail))
            return
    if completion.finish_reason == EARLY_STOP:
        detail["finish_reason"] = EARLY_STOP
    r.results.append(ResultRow(st.request.id, "ok", got.model, completion.text, None, now_s,
                               detail or None))


def _picked(w: panel.Awaiting, pick: Asked, now_s: float) -> ResultRow:
    """A parallel request's answer once the evaluator had its say."""
    completion = pick.outcome
    assert isinstance(completion, Completion)
    detail = {**w.detail, "chosen_attempt": pick.seq}
    if completion.finish_reason == EARLY_STOP:
        detail["finish_reason"] = EARLY_STOP
    return ResultRow(w.request.id, "ok", pick.model, completion.text, None, now_s, detail)


def _failed(st: _State, failed: Sequence[tuple[str, Reply]], started: float, now_s: float
            ) -> ResultRow:
    """A request nothing answered: the error of its last call, or of every call of its last
    round; one whose deadline had passed before that round began (or whose calls found it
    passed) is expired, whatever they met."""
    model = failed[0][0]
    if expired(st.request.deadline_at, started) or all(
            type(e) is DeadlineExceeded for _, e in failed):
        return ResultRow(st.request.id, "expired", model, None,
                         expired_reason(st.request.deadline_at), now_s)
    if len(failed) == 1:
        error = f"{type(failed[0][1]).__name__}: {failed[0][1]}"
    else:
        error = "no model of the panel answered: " + "; ".join(
            f"{m}: {type(e).__name__}: {e}" for m, e in failed)
    return ResultRow(st.request.id, "failed", model, None, error, now_s)

