"""Live shadow evaluation: a sample of answered requests also goes to the top tier (or to
every tier), to grade the routing in force and to retrain it from.

A bundle whose results are committed draws its sample (:func:`sample`, called by
tierline.workers.engine.execute); the calls are made apart, by :func:`run`, in a task of
their own on the ``shadow`` queue (tierline.workers.tasks.shadow_calls), so they never delay
or change an answer, nor hold the tier worker's slot for the bundles queued behind. The
sample is drawn by request id (tierline.router.live.shadowing), so a redelivered bundle
shadows the same requests, and requests already shadowed are skipped. Shadow calls go
through the same token budgets as production, but never wait for them: a call the absorber
cannot take now is skipped. Their own daily budget (``learning.usd_per_day_max``) is
checked against the day's shadow charges plus each call's reserved estimate; past it, no
more shadow calls that UTC day. Their attempts and charges are marked ``shadow``; each
shadowed request's answers (its own, and each shadow call's) are graded against the top
tier's and recorded in ``shadow_outcomes``. With ``learning.warm_shadow_rate``, that rate
samples until ``warm_records`` requests are shadowed (counted in the record, up to that
number, once per bundle). With ``learning.grader: judge``, a second round asks
``learning.judge_model`` whether each given answer is the top tier's
(tierline.router.live.shadowing.judge_prompt): one more shadow call per shadowed request not
answered by the top tier, priced into the same daily budget, numbered after the tiers'
shadow calls; its verdict replaces the extracted answers' comparison.

Shadow calls are written ahead like every call (tierline.record.ahead): one whose worker dies
mid-call is folded into the ledger at its reserved estimate, as a call of unknown outcome.

Nothing here may fail a request: any error is logged and the shadow calls of that bundle
are given up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from tierline.record import shadow_record
from tierline.record.records import ResultRow
from tierline.record.shadow_record import SHADOW_SEQ_FROM, ShadowCall
from tierline.router.envelope import Request
from tierline.router.errors import Taken
from tierline.router.live.shadowing import (
    JUDGE_MAX_OUTPUT_TOKENS,
    grade,
    judge_prompt,
    judged,
    sampled,
    shadow_models,
    verdict,
)
from tierline.router.policy import LearningSpec
from tierline.workers.engine.calls import call_round, prices_of, reserve_round, settle_round
from tierline.workers.providers.base import Completion
from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)


def sample(rt: Runtime, results: Sequence[ResultRow], context: Mapping[str, Request]
           ) -> list[str]:
    """The requests of a recorded bundle to shadow: its answers the policy's sample draws."""
    spec = rt.policy.learning
    if spec is None or max(spec.shadow_rate, spec.warm_shadow_rate or 0.0) <= 0:
        return []
    try:
        records = None
        if spec.warm_shadow_rate is not None:  # the warm-up rate holds until enough are shadowed
            with rt.engine.connect() as conn:
                records = shadow_record.shadowed_count(conn, spec.warm_records)
        return [r.request_id for r in results
                if r.status == "ok" and r.model and r.content is not None
                and r.request_id in context
                and sampled(r.request_id, context[r.request_id].lane, spec, records)]
    except Exception:  # noqa: BLE001 -- the answers are recorded; grading them is optional
        log.warning("shadow sample of a bundle given up", exc_info=True)
        return []


def run(rt: Runtime, request_ids: Sequence[str]) -> int:
    """Shadow these answered requests (:func:`sample`'s); returns how many calls were made.
    Safe to run twice: requests already shadowed are skipped, and a call another delivery
    holds is not made."""
    spec = rt.policy.learning
    if spec is None or not request_ids:
        return 0
    try:
        with rt.engine.connect() as conn:
            results, context, jobs_by_request = shadow_record.answered(conn, request_ids)
        return _shadow(rt, spec, results, context, jobs_by_request)
    except Exception:  # noqa: BLE001 -- the answers are recorded; grading them is optional
        log.warning("shadow calls of %d requests given up", len(request_ids), exc_info=True)
        return 0


def _shadow(rt: Runtime, spec: LearningSpec, chosen: Sequence[ResultRow],
            context: Mapping[str, Request], jobs_by_request: Mapping[str, str | None]) -> int:
    if not chosen:
        return 0
    started = time.time()
    day = int(started // 86400)
    with rt.engine.connect() as conn:
        done = shadow_record.already_shadowed(conn, [r.request_id for r in chosen])
        spent = shadow_record.spent_today_usd(conn, day)
    chosen = [r for r in chosen if r.request_id not in done]
    planned, over, left = _within_budget(rt, spec, chosen, context, spent, started)
    if over:
        log.info("shadow budget of %.4f USD for the day reached: %d shadow calls not made",
                 spec.usd_per_day_max, over)
    if not planned:
        return 0
    budget = reserve_round(rt, planned, started)
    if budget.deferred or budget.refused:  # no waiting for a shadow call: it is skipped
        log.info("%d shadow calls skipped: no room in their token budgets",
                 len(budget.deferred) + len(budget.refused))
    due = budget.due
    # Written ahead like any call: a worker killed mid-call leaves it in the ledger
    # (folded at its reserved estimate, tierline.record.ahead), not out of it.
    replies = call_round(rt, [planned[i] for i in due], started,
                         [_seq(rt, planned[i][1]) for i in due], shadow=True)
    held = {j: budget.granted[i] for j, i in enumerate(due) if i in budget.granted}
    settle_round(rt, held, dict(enumerate(replies)))
    # A Taken reply is an earlier delivery's shadow call: its row, not ours.
    calls = [_call(rt, planned[i], _seq(rt, planned[i][1]), reply, started)
             for i, reply in zip(due, replies, strict=True) if not isinstance(reply, Taken)]
    judges: list[tuple[ShadowCall, Completion | None]] = []
    if spec.judge_model is not None:
        judges = _judge(rt, spec.judge_model, chosen, calls, context, left)
    _record(rt, chosen, calls, context, jobs_by_request, judges)
    return len(calls) + len(judges)


def _call(rt: Runtime, planned: tuple[Request, str], seq: int, reply: object, started: float
          ) -> tuple[ShadowCall, Completion | None]:
    """A shadow call's attempt row, and its answer when it gave one."""
    request, model = planned
    tier = rt.policy.tier_of(model)
    if isinstance(reply, Completion):
        return ShadowCall(request.id, seq, model, tier, True, None, reply.tokens_in,
                          reply.tokens_out, reply.usage_estimated, reply.latency_s,
                          started), reply
    return ShadowCall(request.id, seq, model, tier, False, f"{type(reply).__name__}: {reply}",
                      0, 0, False, 0.0, started), None


def _judge(rt: Runtime, judge: str, chosen: Sequence[ResultRow],
           calls: Sequence[tuple[ShadowCall, Completion | None]],
           context: Mapping[str, Request], left: float
           ) -> list[tuple[ShadowCall, Completion | None]]:
    """The judge's round: for each shadowed request whose answer is not the top tier's and
    whose top tier answered, ask ``judge`` whether they agree, while the budget lasts."""
    top = rt.policy.top_model()
    references = {c.request_id: reply.text for c, reply in calls
                  if c.model == top and reply is not None}
    planned: list[tuple[Request, str]] = []
    for row in chosen:
        reference = references.get(row.request_id)
        if reference is None or row.model == top:
            continue
        request = context[row.request_id]
        prompt = judge_prompt(request.prompt_text, str(row.content), reference)
        estimate = rt.policy.usd(judge, len(prompt) // 4 + 1, JUDGE_MAX_OUTPUT_TOKENS)
        if estimate > left:
            continue
        left -= estimate
        lane_s = rt.policy.lanes[request.lane].latency_budget_s  # type: ignore[index]
        planned.append((replace(request, messages=({"role": "user", "content": prompt},),
                                max_output_tokens=JUDGE_MAX_OUTPUT_TOKENS, stream=False,
                                deadline_at=time.time() + lane_s), judge))
    if not planned:
        return []
    started = time.time()
    budget = reserve_round(rt, planned, started)
    due = budget.due
    seq = SHADOW_SEQ_FROM + len(rt.policy.tier_names)  # after every tier's shadow call
    replies = call_round(rt, [planned[i] for i in due], started, [seq] * len(due), shadow=True)
    held = {j: budget.granted[i] for j, i in enumerate(due) if i in budget.granted}
    settle_round(rt, held, dict(enumerate(replies)))
    return [_call(rt, planned[i], seq, reply, started)
            for i, reply in zip(due, replies, strict=True) if not isinstance(reply, Taken)]


def _seq(rt: Runtime, model: str) -> int:
    """A shadow call's attempt number: apart from the request's own, one per tier."""
    return SHADOW_SEQ_FROM + rt.policy.tier_names.index(rt.policy.tier_of(model))


def _within_budget(rt: Runtime, spec: LearningSpec, chosen: Sequence[ResultRow],
                   context: Mapping[str, Request], spent: Decimal, now_s: float
                   ) -> tuple[list[tuple[Request, str]], int, float]:
    """The shadow calls to make, each priced at its reserved estimate, while the day's
    shadow spend stays within its budget; how many were left out; and what is left."""
    left = float(spec.usd_per_day_max) - float(spent)
    planned: list[tuple[Request, str]] = []
    over = 0
    for row in chosen:
        assert row.model is not None
        request = context[row.request_id]
        # Its own deadline, and never streamed: the user's answer is already given.
        lane_s = rt.policy.lanes[request.lane].latency_budget_s  # type: ignore[index]
        shadow_request = replace(request, stream=False, deadline_at=now_s + lane_s)
        for model in shadow_models(rt.policy, row.model, spec):
            estimate = rt.policy.usd(model, len(request.prompt_text) // 4 + 1,
                                     request.max_output_tokens)
            if estimate > left:
                over += 1
                continue
            left -= estimate
            planned.append((shadow_request, model))
    return planned, over, left


def _record(rt: Runtime, chosen: Sequence[ResultRow],
            calls: Sequence[tuple[ShadowCall, Completion | None]],
            context: Mapping[str, Request], jobs_by_request: Mapping[str, str | None],
            judges: Sequence[tuple[ShadowCall, Completion | None]] = ()) -> None:
    """The shadow attempts (the judge's too), their charges and the graded outcomes: one
    transaction."""
    now_s = time.time()
    top = rt.policy.top_model()
    prices = prices_of(rt)
    answered = {r.request_id: str(r.model) for r in chosen}
    by_request: dict[str, list[tuple[ShadowCall, Completion | None]]] = {}
    for call, reply in calls:
        by_request.setdefault(call.request_id, []).append((call, reply))
    with rt.engine.begin() as conn:
        verdicts = {c.request_id: verdict(reply.text if reply is not None else None)
                     for c, reply in judges}
        shadow_record.record_calls(conn, [c for c, _ in [*calls, *judges]], prices, {
            rid: (context[rid].tenant, context[rid].lane, jobs_by_request.get(rid))
            for rid in by_request})
        own = shadow_record.answering_attempts(conn, answered)
        rows: list[dict[str, Any]] = []
        for row in chosen:
            rid, model = row.request_id, answered[row.request_id]
            if rid not in by_request:
                continue  # every shadow call of it was skipped: nothing to compare
            tokens_in, tokens_out, usd = own.get(rid, (0, 0, Decimal(0)))
            texts = [(model, str(row.content), tokens_in, tokens_out, usd, False)]
            texts += [(c.model, reply.text, c.tokens_in, c.tokens_out,
                       prices[c.model].usd(c.tokens_in, c.tokens_out), True)
                      for c, reply in by_request[rid] if reply is not None]
            gold = context[rid].metadata.get("gold_label")
            gold = gold if isinstance(gold, str) else None
            graded = judged(grade([(t[0], t[1]) for t in texts], top, gold), model,
                            verdicts.get(rid))
            rows.extend({
                "id": f"{rid}/{m}", "request_id": rid, "model": m,
                "tier": rt.policy.tier_of(m), "shadow": shadow, "response": text,
                "answer": g.answer, "tokens_in": t_in, "tokens_out": t_out, "usd": usd_,
                "top_model": top, "agrees_with_top": g.agrees_with_top, "gold_label": gold,
                "agrees_with_gold": g.agrees_with_gold, "recorded_at": now_s,
                "day": int(now_s // 86400)}
                for (m, text, t_in, t_out, usd_, shadow), g in zip(texts, graded, strict=True))
        shadow_record.record_outcomes(conn, rows)
