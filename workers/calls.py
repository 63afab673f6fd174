"""One round of model calls for a bundle: token budgets reserved first, then the calls at
once (bounded by each model's concurrency and each request's deadline), then the holds
settled; each call is recorded as one attempt row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from router.absorber import Limits, Reservation, scope_key
from router.envelope import Request
from router.errors import TierlineError
from workers.providers.base import Call, Completion
from workers.providers.fanout import Outcome, run_calls
from workers.records import AttemptRow
from workers.routing import estimate_tokens
from workers.runtime import Runtime

MAX_CALL_TIMEOUT_S = 300.0  # a single model call never waits longer, whatever the lane


def api_name(rt: Runtime, model: str) -> str:
    """The name a model is called by in its API (the policy key unless ``name`` is set)."""
    return rt.policy.models[model].name or model


def call_round(rt: Runtime, due: Sequence[tuple[Request, str]], started: float) -> list[Outcome]:
    """Call ``model`` for each ``(request, model)`` at once; outcomes in the same order."""
    if not due:
        return []
    calls = [Call(model=api_name(rt, model), messages=request.messages,
                  max_output_tokens=request.max_output_tokens, key=i)
             for i, (request, model) in enumerate(due)]
    models = {model for _, model in due}
    return run_calls(
        calls, {api_name(rt, m): rt.providers[m] for m in models},
        max_concurrency={api_name(rt, m): rt.policy.models[m].max_concurrency for m in models},
        deadline_at={i: min(request.deadline_at, started + MAX_CALL_TIMEOUT_S)
                     for i, (request, _) in enumerate(due)})


def attempt_row(rt: Runtime, request: Request, seq: int, model: str,
                answer: Completion | TierlineError, started: float) -> AttemptRow:
    """The attempt row of one call, paid (a completion) or not (an error)."""
    tier = rt.policy.tier_of(model)
    if isinstance(answer, Completion):
        return AttemptRow(request.id, seq, model, tier, True, None, answer.tokens_in,
                          answer.tokens_out, answer.usage_estimated, answer.latency_s, started)
    return AttemptRow(request.id, seq, model, tier, False,
                      f"{type(answer).__name__}: {answer}", 0, 0, False, 0.0, started)


@dataclass
class Budgeted:
    """A round after the token budgets had their say: positions in the round's list."""

    granted: dict[int, Reservation] = field(default_factory=dict)  # holds of calls allowed
    unlimited: list[int] = field(default_factory=list)  # calls to models without limits
    deferred: list[int] = field(default_factory=list)  # no room now
    refused: list[int] = field(default_factory=list)  # no room ever
    wait_s: float = 0.0  # when the deferred could fit

    @property
    def due(self) -> list[int]:
        """Positions that may be called now, in order."""
        return sorted([*self.granted, *self.unlimited])


def reserve_round(rt: Runtime, planned: Sequence[tuple[Request, str]], now_s: float
                  ) -> Budgeted:
    """Reserve prompt + max output tokens for every planned call: one ``reserve_many`` per
    model, so a bundle costs one round trip per model."""
    out = Budgeted()
    by_model: dict[str, list[int]] = {}
    for i, (_, model) in enumerate(planned):
        by_model.setdefault(model, []).append(i)
    for model, positions in by_model.items():
        spec = rt.policy.models[model].limits
        if not any((spec.tokens_per_day, spec.tokens_per_minute, spec.requests_per_minute)):
            out.unlimited.extend(positions)
            continue
        decision = rt.absorber.reserve_many(
            scope_key(model), Limits.from_model_limits(spec),
            [estimate_tokens(len(planned[i][0].prompt_text), planned[i][0].max_output_tokens)
             for i in positions], now_s=now_s)
        out.granted.update({positions[j]: res for j, res in decision.granted.items()})
        out.deferred += [positions[j] for j in decision.deferred]
        out.refused += [positions[j] for j in decision.refused]
        if decision.deferred:
            out.wait_s = max(out.wait_s, decision.retry_after_s or 1.0)
    return out


def settle_round(rt: Runtime, held: dict[int, Reservation], answers: dict[int, Outcome]) -> None:
    """Swap holds for the usage the providers reported; a failed call gives its hold back."""
    used = [(res, answer.tokens_in + answer.tokens_out) for i, res in held.items()
            if isinstance(answer := answers[i], Completion)]
    freed = [res for i, res in held.items() if not isinstance(answers[i], Completion)]
    if used:
        rt.absorber.settle_many(used)
    if freed:
        rt.absorber.release_many(freed)
