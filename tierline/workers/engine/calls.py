"""One round of model calls for a bundle: token budgets reserved first, then the calls at
once (bounded by each model's concurrency and each request's deadline), except those the
model health registry advises against (tierline.workers.engine.health), then the holds settled;
each call
is recorded as one attempt row, and how it ended in the registry."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from tierline.record import ahead
from tierline.record.ahead import Ahead
from tierline.record.records import AttemptRow, Price
from tierline.router.envelope import Request
from tierline.router.errors import (
    CircuitOpen,
    CutOff,
    DeadlineExceeded,
    Taken,
    TierlineError,
    TooSlow,
    Unavailable,
)
from tierline.router.live.absorber import Limits, Reservation, scope_key
from tierline.router.live.latency import estimate
from tierline.router.policy import ModelLimits
from tierline.router.strategy_spec import StrategySpec
from tierline.workers.engine.health import ANSWERED, CUT_OFF, FAILED, Seen
from tierline.workers.engine.relay import Sink
from tierline.workers.providers.base import Completion, ModelCall
from tierline.workers.providers.fanout import Reply, run_calls
from tierline.workers.routing import estimate_tokens
from tierline.workers.runtime import Runtime

MAX_CALL_TIMEOUT_S = 300.0  # a single model call never waits longer, whatever the lane
CUT_OFF_COUNTS_AS = 1.5  # a call cut off after t seconds counts as one that took 1.5 t


def api_name(rt: Runtime, model: str) -> str:
    """The name a model is called by in its API (the policy key unless ``name`` is set)."""
    return rt.policy.models[model].name or model


def prices_of(rt: Runtime) -> dict[str, Price]:
    """The policy's unit prices as exact decimals, by model."""
    return {name: Price(Decimal(str(spec.usd_per_1m_input)), Decimal(str(spec.usd_per_1m_output)))
            for name, spec in rt.policy.models.items()}


def call_round(rt: Runtime, due: Sequence[tuple[Request, str]], started: float,
               seqs: Sequence[int] | None = None, shadow: bool = False) -> list[Reply]:
    """ModelCall ``model`` for each ``(request, model)`` at once; outcomes in the same order.

    Calls the model health registry advises against are not made: a model whose breaker is
    open (:class:`CircuitOpen`), or one that cannot be expected to finish before the
    request's deadline (:class:`TooSlow`). How each call ended goes to the registry.
    ``seqs``: each call's attempt number; with them, the calls to be made are put on record
    first, in one statement (write-ahead attempts, tierline.record.ahead), marked ``shadow`` for
    shadow calls (tierline.workers.engine.shadow)."""
    if not due:
        return []
    early_stop = rt.policy.strategy.early_stop
    rule = early_stop.rule() if early_stop is not None else None
    # Cut off inside the task's lease, or its message would be delivered twice
    # (tierline.config.lease).
    cap_s = min(MAX_CALL_TIMEOUT_S, rt.settings.lease.call_s)
    deadlines = [min(request.deadline_at, started + cap_s) for request, _ in due]
    skipped = _advised_against(rt, due, deadlines, started)
    asked = [i for i in range(len(due)) if i not in skipped]
    calls = [ModelCall(model=api_name(rt, model), messages=request.messages,
                  max_output_tokens=request.max_output_tokens, key=i, early_stop=rule,
                  sink=Sink(rt.relay, request.id, model) if relayed(rt, request) else None)
             for i, (request, model) in ((i, due[i]) for i in asked)]
    if seqs is not None and asked:
        taken = _write_ahead(rt, [(due[i][0], due[i][1], seqs[i]) for i in asked], started,
                             shadow)
        if taken:  # another delivery of these requests holds these attempts: not called
            skipped.update({asked[j]: Taken(f"{due[asked[j]][0].id}/{seqs[asked[j]]}: "
                                            "written ahead by another delivery")
                            for j in taken})
            calls = [c for j, c in enumerate(calls) if j not in taken]
            asked = [i for j, i in enumerate(asked) if j not in taken]
    models = {model for _, model in due}
    replies = run_calls(
        calls, {api_name(rt, m): rt.providers[m] for m in models},
        max_concurrency={api_name(rt, m): rt.policy.models[m].max_concurrency for m in models},
        deadline_at={i: deadlines[i] for i in asked})
    rt.health.record([seen for i, reply in zip(asked, replies, strict=True)
                      if (seen := _seen(due[i], reply, deadlines[i] - started)) is not None],
                     time.time())
    # A call cut off by the lease, not by its request's deadline, timed out like a model
    # that is down: it may be tried again (later, or another model), not counted as late.
    replies = [Unavailable(f"{api_name(rt, due[i][1])}: no answer within {cap_s:.0f} s, the "
                           "longest a call may take (see TIERLINE_VISIBILITY_TIMEOUT_S)")
               if (isinstance(reply, CutOff) or type(reply) is DeadlineExceeded)
               and deadlines[i] < due[i][0].deadline_at else reply
               for i, reply in zip(asked, replies, strict=True)]
    outcomes: dict[int, Reply] = {**skipped, **dict(zip(asked, replies, strict=True))}
    return [outcomes[i] for i in range(len(due))]


def _write_ahead(rt: Runtime, calls: Sequence[tuple[Request, str, int]], started: float,
                 shadow: bool = False) -> set[int]:
    """Each call on record before it is made, with the tokens reserved for it; returns the
    positions whose attempt id another delivery holds already (not to be called)."""
    prices = prices_of(rt)
    ahead_calls = [Ahead(
        request.id, seq, model, rt.policy.tier_of(model), len(request.prompt_text) // 4 + 1,
        request.max_output_tokens, prices[model].usd_per_1m_input,
        prices[model].usd_per_1m_output, started, shadow) for request, model, seq in calls]
    # One statement, committed on its own (autocommit): no BEGIN and COMMIT round trips.
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        written = ahead.write(conn, ahead_calls)
    return {j for j, c in enumerate(ahead_calls) if c.id not in written}


def _seen(call: tuple[Request, str], reply: Reply, allowed_s: float) -> Seen | None:
    """What the model health registry learns from a call's end, if anything."""
    request, model = call
    if isinstance(reply, Completion):
        return Seen(model, ANSWERED, reply.tokens_out, reply.latency_s)
    if isinstance(reply, CutOff):  # it took longer than allowed, by how much nobody knows
        return Seen(model, CUT_OFF, request.max_output_tokens, CUT_OFF_COUNTS_AS * allowed_s)
    if isinstance(reply, Unavailable):
        return Seen(model, FAILED)
    return None


def _advised_against(rt: Runtime, due: Sequence[tuple[Request, str]],
                     deadlines: Sequence[float], started: float) -> dict[int, Reply]:
    """The calls not to make, by position: the model's breaker is open, or (with
    ``failure.fail_fast``) its expected latency exceeds what is left of the budget."""
    health = rt.health.read({model for _, model in due})
    estimates = {m: e for m, h in health.items() if (e := estimate(m, h.latency)) is not None}
    skipped: dict[int, Reply] = {}
    for i, (request, model) in enumerate(due):
        if model in health and (why := health[model].breaker.refusal(model, started)):
            skipped[i] = CircuitOpen(why)
        elif rt.policy.failure.fail_fast and model in estimates and (
                why := estimates[model].miss(request.max_output_tokens, deadlines[i] - started)):
            skipped[i] = TooSlow(why)
    return skipped


def relays(strategy: StrategySpec) -> bool:
    """Whether a strategy's requests that ask to stream have their text relayed as it is
    generated: it accepts the first answer (``single``), so what is shown is never replaced
    by a better answer; only a failed call's fallback can void it (see
    tierline.workers.engine.relay)."""
    return strategy.kind == "single" and not strategy.options.get("bundle")


def relayed(rt: Runtime, request: Request) -> bool:
    """Whether this request's text is relayed as it is generated."""
    return request.stream and relays(rt.policy.strategy)


def attempt_row(rt: Runtime, request: Request, seq: int, model: str,
                answer: Completion | TierlineError, started: float) -> AttemptRow:
    """The attempt row of one call, paid (a completion) or not (an error)."""
    tier = rt.policy.tier_of(model)
    if isinstance(answer, Completion):
        return AttemptRow(request.id, seq, model, tier, True, None, answer.tokens_in,
                          answer.tokens_out, answer.usage_estimated, answer.latency_s, started)
    return AttemptRow(request.id, seq, model, tier, False,
                      f"{type(answer).__name__}: {answer}", 0, 0, False, 0.0, started)


def keeping(attempts: Sequence[AttemptRow], kept: Mapping[tuple[str, int], Completion]
            ) -> list[AttemptRow]:
    """The attempt rows, each paid answer of a request deferred after it paid (``kept``, by
    request id and seq) on its row, so the request reuses it when it comes back
    (:func:`kept_answer`) instead of paying again; the same for every strategy's driver."""
    if not kept:
        return list(attempts)
    return [row if (answer := kept.get((row.request_id, row.seq))) is None
            else replace(row, content=answer.text, finish_reason=answer.finish_reason)
            for row in attempts]


def kept_answer(row: AttemptRow) -> Completion:
    """An answer kept on its attempt row, as its call returned it."""
    assert row.content is not None
    return Completion(row.content, row.tokens_in, row.tokens_out, row.usage_estimated,
                      row.latency_s, row.finish_reason, row.model)


@dataclass
class Budgeted:
    """A round after the token budgets had their say: positions in the round's list."""

    # holds of the calls allowed: the model's budget, then the tenant's share, where limited
    granted: dict[int, list[Reservation]] = field(default_factory=dict)
    unlimited: list[int] = field(default_factory=list)  # calls under no limit at all
    deferred: list[int] = field(default_factory=list)  # no room now
    refused: list[int] = field(default_factory=list)  # no room ever
    wait_s: float = 0.0  # when the deferred could fit

    @property
    def due(self) -> list[int]:
        """Positions that may be called now, in order."""
        return sorted([*self.granted, *self.unlimited])


def _limited(limits: ModelLimits) -> bool:
    return any((limits.tokens_per_day, limits.tokens_per_minute, limits.requests_per_minute))


def reserve_round(rt: Runtime, planned: Sequence[tuple[Request, str]], now_s: float
                  ) -> Budgeted:
    """Reserve prompt + max output tokens for every planned call: one ``reserve_many`` per
    model, then one per tenant that has its own share of that model; a call the tenant's
    share cannot take gives its model hold back."""
    out = Budgeted()
    by_scope: dict[tuple[str, str | None], list[int]] = {}
    for i, (request, model) in enumerate(planned):
        by_scope.setdefault((model, None), []).append(i)
        if request.tenant in rt.policy.models[model].tenant_limits:
            by_scope.setdefault((model, request.tenant), []).append(i)
    holds: dict[int, list[Reservation]] = {i: [] for i in range(len(planned))}
    blocked: set[int] = set()
    for (model, tenant), positions in by_scope.items():  # model scopes come first
        spec = rt.policy.models[model]
        limits = spec.limits if tenant is None else spec.tenant_limits[tenant]
        positions = [i for i in positions if i not in blocked]
        if not _limited(limits) or not positions:
            continue
        decision = rt.absorber.reserve_many(
            scope_key(model, tenant), Limits.from_model_limits(limits),
            [estimate_tokens(len(planned[i][0].prompt_text), planned[i][0].max_output_tokens)
             for i in positions], now_s=now_s)
        for j, res in decision.granted.items():
            holds[positions[j]].append(res)
        for j in [*decision.deferred, *decision.refused]:
            blocked.add(positions[j])
            (out.deferred if j in decision.deferred else out.refused).append(positions[j])
        if decision.deferred:
            out.wait_s = max(out.wait_s, decision.retry_after_s or 1.0)
    given_back = [res for i in blocked for res in holds.pop(i)]
    if given_back:
        rt.absorber.release_many(given_back)
    for i, held in holds.items():
        if held:
            out.granted[i] = held
        else:
            out.unlimited.append(i)
    return out


def settle_round(rt: Runtime, held: dict[int, list[Reservation]],
                 answers: dict[int, Reply]) -> None:
    """Swap holds for the usage the providers reported; a failed call gives its holds back."""
    used = [(res, answer.tokens_in + answer.tokens_out) for i, group in held.items()
            if isinstance(answer := answers[i], Completion) for res in group]
    freed = [res for i, group in held.items() if not isinstance(answers[i], Completion)
             for res in group]
    if used:
        rt.absorber.settle_many(used)
    if freed:
        rt.absorber.release_many(freed)
