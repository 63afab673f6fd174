"""Value types of the routing step machine: what was paid for, and the next action."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    """One paid model call: its response, extracted answer and the scorer's logit for it."""

    model: str
    response: str
    answer: str | None
    evidence: float = 0.0  # logit of P(right | prompt, this response alone)


@dataclass(frozen=True)
class Call:
    """Next action: call these models (at once, in parallel)."""

    models: tuple[str, ...]


@dataclass(frozen=True)
class Accept:
    """Final action: return the response of ``answer_from``; ``aggregate`` if voted."""

    answer_from: str
    answer: str | None
    confidence: float
    aggregate: bool = False


Action = Call | Accept


@dataclass(frozen=True)
class RequestView:
    """What a strategy may read about a request: its prompt and the learned estimates."""

    prompt: str
    p_correct: dict[str, float] = field(default_factory=dict)  # learned router, per model
    band: str = "mid"  # complexity band from the estimator
    max_output_tokens: int = 512
