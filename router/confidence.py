"""Answer-confidence scorer: P(a response is right | prompt, response), per model.

Features: hashed word/char n-grams of the response, whether an answer was extractable,
hedging words, response length, and the learned router's logit for the prompt. One
logistic model per model (columns of one weight matrix). Agreement between responses is
the :mod:`router.judge`'s business; this scorer looks at one response at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from router.answers import Extractor
from router.features import HashingConfig, SparseRows, append_dense, fit_idf, hash_texts
from router.logistic import DEFAULT_FIT, FitConfig, fit_sparse, sigmoid
from router.steps import Attempt

_HEDGES = re.compile(
    r"\b(cannot|can't|not sure|unclear|unable|none of|not possible|approximately|assum\w*|"
    r"i think|likely|perhaps|might|however|closest|not enough|insufficient)\b",
    re.IGNORECASE,
)
N_DENSE = 4  # extractable, hedges, length, router logit
RESPONSE_HASHING = HashingConfig(n_bits=15, char_ngram=4, max_chars=2000)


def response_dense(responses: Sequence[str], answers: Sequence[str | None],
                   router_logits: np.ndarray) -> np.ndarray:
    """Dense per-response features (n, N_DENSE)."""
    extractable = np.array([a is not None for a in answers], dtype=np.float64)
    hedges = np.array([len(_HEDGES.findall(r[-1500:])) for r in responses], dtype=np.float64)
    length = np.array([np.log1p(len(r)) for r in responses], dtype=np.float64)
    return np.stack([extractable, np.minimum(hedges, 6) / 3, length / 8, router_logits], axis=1)


@dataclass(frozen=True)
class ResponseScorer:
    """Per-model logistic model of one response's correctness."""

    models: tuple[str, ...]
    config: HashingConfig
    weights: np.ndarray  # (n_features + N_DENSE, n_models), IDF folded in
    bias: np.ndarray  # (n_models,)

    def evidence(self, model: str, responses: Sequence[str], answers: Sequence[str | None],
                 router_logits: np.ndarray) -> np.ndarray:
        """Logits of P(right) for a batch of responses of one model."""
        rows = self._rows(responses, answers, router_logits)
        j = self.models.index(model)
        return np.asarray(rows.dot(self.weights[:, j]) + self.bias[j])

    def attempt(self, model: str, response: str, router_logit: float,
                extractor: Extractor) -> Attempt:
        """Score one live response into an :class:`Attempt` for the strategies."""
        answer = extractor(response)
        logit = self.evidence(model, [response], [answer], np.array([router_logit]))[0]
        return Attempt(model, response, answer, float(logit))

    def probability(self, attempt: Attempt) -> float:
        """P(right) of one attempt from its evidence."""
        return float(sigmoid(np.array(attempt.evidence)))

    def _rows(self, responses: Sequence[str], answers: Sequence[str | None],
              router_logits: np.ndarray) -> SparseRows:
        rows = hash_texts(list(responses), self.config)
        return append_dense(rows, response_dense(responses, answers, router_logits))


def train_response_scorer(
    models: Sequence[str],
    responses: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str | None]],
    scores: np.ndarray,
    router_logits: np.ndarray,
    config: HashingConfig = RESPONSE_HASHING,
    fit: FitConfig = DEFAULT_FIT,
) -> ResponseScorer:
    """Fit one column per model; ``responses[j][i]`` is model j's response to item i."""
    n_features = config.n_features + N_DENSE
    weights = np.zeros((n_features, len(models)))
    bias = np.zeros(len(models))
    for j in range(len(models)):
        rows = hash_texts(list(responses[j]), config)
        idf = np.concatenate([fit_idf(rows), np.ones(N_DENSE)])
        rows = append_dense(rows, response_dense(responses[j], answers[j], router_logits[:, j]))
        w, b = fit_sparse(rows.with_values(rows.values * idf[rows.indices]), scores[:, j], fit)
        weights[:, j], bias[j] = w[:, 0] * idf, b[0]
    return ResponseScorer(tuple(models), config, weights, bias)


def average_scorers(scorers: Sequence[ResponseScorer]) -> ResponseScorer:
    """The mean of fold models (linear, so the mean is itself a model)."""
    first = scorers[0]
    return ResponseScorer(
        first.models, first.config,
        np.mean([s.weights for s in scorers], axis=0), np.mean([s.bias for s in scorers], axis=0),
    )
