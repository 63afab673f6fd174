"""Value types of the routing step machine: what was paid for, and the next action."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One paid model call: its response, extracted answer and the scorer's logit for it.

    Live, the tier worker also says which of the machine's calls gave it (``step``: the
    number of :class:`Call` actions the request had acted on before, so one step's answers
    belong together, whatever fell back or failed meanwhile) and why the model stopped."""

    model: str
    response: str
    answer: str | None
    evidence: float = 0.0  # logit of P(right | prompt, this response alone)
    step: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class Call:
    """Next action: call these models (at once, in parallel). The first is the lead: when
    it cannot be asked now, the round waits or falls back as a whole; another the budget
    cannot take now is left out of the round."""

    models: tuple[str, ...]


@dataclass(frozen=True)
class Accept:
    """Final action: return the response of ``answer_from``; ``aggregate`` if voted."""

    answer_from: str
    answer: str | None
    confidence: float
    aggregate: bool = False
    # What the machine has to say about how it chose (a panel's votes), for the result.
    detail: Mapping[str, Any] | None = field(default=None, compare=False)


Action = Call | Accept


@dataclass(frozen=True)
class RequestView:
    """What a strategy may read about a request: its prompt and the learned estimates."""

    prompt: str
    p_correct: dict[str, float] = field(default_factory=dict)  # learned router, per model
    band: str = "mid"  # complexity band from the estimator
    max_output_tokens: int = 512
