"""The zero-training default: cheap models must agree before their answer is accepted.

A deployment with no recorded outcomes of its own cannot train a router, a scorer or a
judge; it can still ask its cheapest tiers together and accept their answer only when they
give the same one (the extracted answer: a choice letter, a number, a label; else the
normalised text), escalating to the top tier otherwise. With one cheap tier there is nobody
to agree with, so its answer must pass the free self-checks (an answer stated, its own
arithmetic holding, not a number copied from the prompt).

:class:`Agreement` is a step machine like those of :mod:`tierline.router.strategies.basic`, so
it runs
offline in ``tierline bench routing`` (row kind ``untrained``) and live through the tier
worker's step loop, where :func:`untrained_parts` stands in for a trained bundle.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.answers import EXTRACTORS, Extractor, states_answer
from tierline.router.learned.arithmetic import (
    check_claims,
    differs_from_last,
    echoes_prompt,
    unused_share,
)
from tierline.router.strategies.steps import Accept, Action, Attempt, Call, RequestView

_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = " .,;:!?\"'`*()[]{}"
MAX_COMPARED_CHARS = 4000  # two long texts that agree this far are taken to agree


def normalised(text: str) -> str:
    """Text as compared for agreement: case, spacing and edge punctuation ignored."""
    return _SPACE.sub(" ", text[:MAX_COMPARED_CHARS].lower()).strip(_EDGE_PUNCTUATION)


def answer_key(attempt: Attempt) -> str | None:
    """What two responses must share to agree: the extracted answer, else the normalised
    text; None for an empty response, which agrees with nothing."""
    if attempt.answer is not None:
        return attempt.answer
    return normalised(attempt.response) or None


def passes_checks(prompt: str, attempt: Attempt, strict: bool = False) -> bool:
    """A lone cheap answer's free checks: an answer was extracted, every plain arithmetic
    claim holds, the answer is what the last claim computed and not a number of the prompt;
    ``strict``: also stated as the answer, with every number the prompt gives used."""
    if attempt.answer is None:
        return False
    claims = check_claims(attempt.response)
    if claims.failed or differs_from_last(attempt.answer, claims) or echoes_prompt(
            prompt, attempt.answer):
        return False
    return not strict or (states_answer(attempt.response)
                          and unused_share(prompt, attempt.response) == 0)


@dataclass(frozen=True)
class Agreement:
    """Ask the ``panel`` cheapest tiers at once; accept their answer when they all give the
    same one (a panel of one: when it passes the free checks, ``strict`` or not), else ask
    ``escalate_to`` (default: the top tier) and accept its answer. ``panel=0`` asks only
    ``escalate_to``."""

    tiers: tuple[str, ...]  # one model per tier, cheapest first
    panel: int = 2
    escalate_to: str | None = None
    strict: bool = False

    @property
    def asked_first(self) -> tuple[str, ...]:
        """The panel: the cheapest tiers, leaving at least the top to escalate to."""
        if self.panel == 0:
            return ()
        return self.tiers[: max(1, min(self.panel, len(self.tiers) - 1))]

    @property
    def target(self) -> str:
        """Where a disagreement goes."""
        return self.escalate_to or self.tiers[-1]

    def step(self, request: RequestView, attempts: Sequence[Attempt]) -> Action:
        panel = self.asked_first
        if not attempts:
            return Call(panel or (self.target,))
        by_model = {a.model: a for a in attempts}
        if self.target in by_model and self.target not in panel:
            top = by_model[self.target]
            return Accept(top.model, top.answer, 0.5)
        asked = [by_model[m] for m in panel if m in by_model]
        keys = {answer_key(a) for a in asked}
        if len(asked) == len(panel) and len(keys) == 1 and None not in keys and (
                len(asked) > 1 or passes_checks(request.prompt, asked[0], self.strict)):
            lead = asked[-1]  # the pricier supporter's response is returned
            return Accept(lead.model, lead.answer, 1.0, aggregate=len(asked) > 1)
        if self.target in by_model or len(self.tiers) == 1:  # nothing left to ask
            lead = asked[-1] if asked else attempts[-1]
            return Accept(lead.model, lead.answer, 0.0)
        return Call((self.target,))


@dataclass(frozen=True)
class NoRouter:
    """Stands in for the learned router: every model equally likely to be right."""

    models: tuple[str, ...]

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        return np.full((len(prompts), len(self.models)), 0.5)


@dataclass(frozen=True)
class NoScorer:
    """Stands in for the response scorer: the extracted answer, no evidence."""

    def attempt(self, model: str, prompt: str, response: str, router_logit: float,
                extractor: Extractor) -> Attempt:
        return Attempt(model, response, extractor(response), 0.0)


@dataclass(frozen=True)
class UntrainedParts:
    """What the tier worker's step loop reads from a bundle, with nothing trained."""

    models: tuple[str, ...]
    extractor: str
    router: NoRouter
    scorer: NoScorer


def untrained_parts(models: Sequence[str], extractor: str = "auto") -> UntrainedParts:
    """The parts the live step loop needs for :class:`Agreement` (``extractor`` is a key
    of :data:`tierline.router.learned.answers.EXTRACTORS`)."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown answer extractor {extractor!r} "
                         f"(known: {', '.join(EXTRACTORS)})")
    return UntrainedParts(tuple(models), extractor, NoRouter(tuple(models)), NoScorer())
