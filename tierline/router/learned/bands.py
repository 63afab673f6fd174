"""The learned router as the complexity estimator (``classifier.kind: learned``).

A prompt's complexity is 1 - P(the cheapest tier's model answers it right), as the router
of a trained bundle (``classifier.artifact``, from ``tierline router train``) estimates it.
The policy's thresholds band it like the composite's score: with the defaults, a prompt
the cheapest model is likely (at least 60%) to get right is ``low``, and one it is
unlikely (under 30%) to get right is ``high``. A decision's reasons list every model's
estimate, which also tells the 4-bit variant choice how good each model is expected to be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierline.router.errors import PolicyError
from tierline.router.learned.bundle import load_bundle
from tierline.router.learned.router import LearnedRouter
from tierline.router.policy import Policy

ARTIFACT_KEY = "classifier.artifact"


@dataclass(frozen=True)
class LearnedScores:
    """Complexity per prompt, and the P(correct) per model it came from."""

    composite: np.ndarray  # (n,) 1 - P(the cheapest tier's model is right)
    p: np.ndarray  # (n, n_models)
    models: tuple[str, ...]

    def p_correct(self, i: int) -> dict[str, float]:
        """Prompt ``i``'s P(correct) per model."""
        return {m: float(self.p[i, j]) for j, m in enumerate(self.models)}

    def reasons(self, i: int) -> dict[str, Any]:
        return {"p_correct": {m: round(v, 4) for m, v in self.p_correct(i).items()}}


@dataclass(frozen=True)
class LearnedEstimator:
    """Scores prompts with a learned router, from the cheapest tier's point of view."""

    router: LearnedRouter
    cheapest: str

    def score(self, texts: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> LearnedScores:
        p = self.router.predict(texts)
        return LearnedScores(1.0 - p[:, self.router.column(self.cheapest)], p,
                             self.router.models)


def learned_estimator(policy: Policy) -> LearnedEstimator:
    """The estimator of the policy's ``classifier.artifact``; refused with the mismatch named
    when it was trained for other models than the policy's."""
    path = policy.classifier.artifact
    if path is None:
        raise PolicyError(policy.name, ARTIFACT_KEY, "classifier.kind 'learned' needs one")
    bundle = load_bundle(path, list(policy.models), key=ARTIFACT_KEY)
    return LearnedEstimator(bundle.router, policy.tiers[policy.tier_names[0]][0])
