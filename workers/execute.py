"""The tier worker's work: call the models for a bundle, fall back on failure, record it all.

A bundle's calls go out concurrently. A call that fails moves its request to the next
model of its fallback chain (the rest of its tier, then cheaper tiers; never pricier),
and the next round sends all such calls together. Every call is one attempt row; the
attempts, charges and results of the whole bundle are written in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from router.decide import fallback_chain
from router.envelope import Request
from router.errors import DeadlineExceeded, TierlineError
from workers import jobs, records
from workers.providers.base import Call, Completion
from workers.providers.fanout import run_calls
from workers.records import AttemptRow, Price, ResultRow
from workers.runtime import Runtime

MAX_CALL_TIMEOUT_S = 300.0  # a single model call never waits longer, whatever the lane


@dataclass
class _Pending:
    request: Request
    chain: list[str]  # models still to try, first is next
    seq: int = 0


def prices_of(rt: Runtime) -> dict[str, Price]:
    """The policy's unit prices as exact decimals, by model."""
    return {name: Price(Decimal(str(spec.usd_per_1m_input)), Decimal(str(spec.usd_per_1m_output)))
            for name, spec in rt.policy.models.items()}


def execute(rt: Runtime, request_ids: Sequence[str], now: Callable[[], float] = time.time) -> int:
    """Answer a bundle of routed requests; returns how many got a result now.

    Safe to run twice: requests that already have a result are skipped, and attempt,
    charge and result rows are keyed so a repeat writes nothing new.
    """
    with rt.engine.begin() as conn:
        loaded = records.load_requests(conn, request_ids)
        done = records.finished_ids(conn, [r.id for r in loaded])
        stopped = jobs.halted(conn, [r.id for r in loaded if r.id not in done], now())
        todo = [r for r in loaded if r.id not in done and r.id not in stopped]
        decided = records.load_decisions(conn, [r.id for r in todo])
        jobs_by_request = records.job_of(conn, [r.id for r in loaded])
        jobs.settle(conn, {jobs_by_request[i] for i in stopped if jobs_by_request.get(i)}, now())
    pending = [_Pending(r, [decided[r.id].model, *fallback_chain(rt.policy, decided[r.id].model)])
               for r in todo if r.id in decided]
    attempts: list[AttemptRow] = []
    results: list[ResultRow] = []
    while pending:
        started = now()
        calls = [Call(model=_api_name(rt, p.chain[0]), messages=p.request.messages,
                      max_output_tokens=p.request.max_output_tokens, key=i)
                 for i, p in enumerate(pending)]
        outcomes = run_calls(
            calls, {_api_name(rt, m): rt.providers[m] for p in pending for m in p.chain[:1]},
            max_concurrency={_api_name(rt, m): rt.policy.models[m].max_concurrency
                             for p in pending for m in p.chain[:1]},
            deadline_at={i: min(p.request.deadline_at, started + MAX_CALL_TIMEOUT_S)
                         for i, p in enumerate(pending)})
        retry: list[_Pending] = []
        for p, outcome in zip(pending, outcomes, strict=True):
            model = p.chain[0]
            attempts.append(_attempt(rt, p, model, outcome, started))
            p.seq += 1
            if isinstance(outcome, Completion):
                results.append(ResultRow(p.request.id, "ok", model, outcome.text, None, now()))
            elif isinstance(outcome, DeadlineExceeded) or len(p.chain) == 1:
                results.append(ResultRow(p.request.id, "failed", model, None,
                                         f"{type(outcome).__name__}: {outcome}", now()))
            else:
                p.chain.pop(0)
                retry.append(p)
        pending = retry
    with rt.engine.begin() as conn:
        records.record_outcomes(conn, attempts, results, prices_of(rt),
                                {r.id: r for r in todo}, jobs_by_request)
        jobs.settle(conn, {j for j in jobs_by_request.values() if j}, now())
    return len(results)


def _api_name(rt: Runtime, model: str) -> str:
    """The name a model is called by in its API (the policy key unless ``name`` is set)."""
    return rt.policy.models[model].name or model


def _attempt(rt: Runtime, p: _Pending, model: str, outcome: Completion | TierlineError,
             started: float) -> AttemptRow:
    tier = rt.policy.tier_of(model)
    if isinstance(outcome, Completion):
        return AttemptRow(p.request.id, p.seq, model, tier, True, None, outcome.tokens_in,
                          outcome.tokens_out, outcome.usage_estimated, outcome.latency_s, started)
    return AttemptRow(p.request.id, p.seq, model, tier, False,
                      f"{type(outcome).__name__}: {outcome}", 0, 0, False, 0.0, started)
