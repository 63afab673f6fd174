"""Lookahead: P(the judge's best answer is right after also calling model m | current state).

Trained on simulated states from the train split (out-of-fold evidence), it prices the
value of one more call: a value cascade calls the model with the largest expected gain in
accuracy per unit of cost, and stops when no call is worth its price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.judge import Candidate
from tierline.router.learned.logistic import fit_dense, logit1, sigmoid1
from tierline.router.strategies.steps import Attempt


def lookahead_features(models: Sequence[str], ranked: Sequence[Candidate], n_called: int,
                       called: set[str], next_model: str,
                       router_logits: Mapping[str, float]) -> np.ndarray:
    """State summary (best and runner-up confidence, what was called) plus the candidate call."""
    best = ranked[0].confidence if ranked else 0.0
    second = ranked[1].confidence if len(ranked) > 1 else 0.0
    shared = [
        logit1(best) if ranked else 0.0, float(bool(ranked)), second,
        float(n_called), router_logits.get(next_model, 0.0),
    ]
    onehot = [float(m == next_model) for m in models]
    crossed = [o * v for o in onehot for v in (shared[0], shared[2], shared[4])]
    return np.array(shared + onehot + crossed + [float(m in called) for m in models])


@dataclass(frozen=True)
class Lookahead:
    """Predicts the judge's accuracy after one more call."""

    models: tuple[str, ...]
    weights: np.ndarray
    bias: float

    def p_after(self, ranked: Sequence[Candidate], attempts: Sequence[Attempt], next_model: str,
                router_logits: Mapping[str, float]) -> float:
        """P(right) of the best answer once ``next_model`` has also answered."""
        x = lookahead_features(self.models, ranked, len(attempts), {a.model for a in attempts},
                               next_model, router_logits)
        return sigmoid1(float(x @ self.weights) + self.bias)


def train_lookahead(models: Sequence[str], rows: Sequence[tuple[Sequence[Candidate], int, set[str],
                    str, Mapping[str, float], float]], l2: float = 1e-3) -> Lookahead:
    """Fit on (ranked candidates, n called, called set, next model, router logits, label)."""
    if not rows:
        raise ValueError("lookahead: no training rows")
    x = np.array([lookahead_features(models, r, n, c, m, lg) for r, n, c, m, lg, _ in rows])
    y = np.array([label for *_, label in rows], dtype=np.float64)
    w, b = fit_dense(x, y, l2=l2)
    return Lookahead(tuple(models), w, b)
