"""What a panel needs of the tier worker beyond its rounds: the evaluator's round and the
cost multiplier.

Kind ``parallel`` asks its panel at a request's first call, ``hybrid`` at its critical tier
(the machines of tierline.router.strategies.plain; the driver,
tierline.workers.engine.drive, makes their calls). An ``evaluator`` aggregate asks its model
in a second round (:func:`evaluate`); a reply naming no single response leaves the vote
standing, and ``detail`` says why.

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
from tierline.router.strategies.aggregation import answer_of, evaluator_prompt, read_pick
from tierline.router.strategies.plain import EVALUATED
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


@dataclass(frozen=True)
class Asked:
    """One panel call: the model, its attempt's seq, and what came back."""

    model: str
    seq: int
    outcome: Reply


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
