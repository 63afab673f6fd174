"""Answer-confidence scorer: P(a response is right | prompt, response), per model.

Features: hashed word/char n-grams of the response, whether an answer was extractable,
hedging words, response length and the learned router's logit for the prompt; then the
self-checks: the response's numbers against themselves and the prompt
(:mod:`tierline.router.learned.arithmetic`), whether it states its answer, and how many distinct
numbers its
ending mentions. One logistic model per model (columns of one weight matrix). Agreement
between responses is the :mod:`tierline.router.learned.judge`'s business; this scorer looks at
one response
at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.answers import Extractor, states_answer
from tierline.router.learned.arithmetic import (
    check_claims,
    differs_from_last,
    echoes_prompt,
    is_fractional,
    unused_share,
)
from tierline.router.learned.features import (
    HashingConfig,
    SparseRows,
    append_dense,
    fit_idf,
    hash_texts,
)
from tierline.router.learned.logistic import DEFAULT_FIT, FitConfig, fit_sparse, sigmoid1
from tierline.router.strategies.steps import Attempt

_HEDGES = re.compile(
    r"\b(cannot|can't|not sure|unclear|unable|none of|not possible|approximately|assum\w*|"
    r"i think|likely|perhaps|might|however|closest|not enough|insufficient)\b",
    re.IGNORECASE,
)
_NUMBERS = re.compile(r"\d[\d,]*(?:\.\d+)?")
N_PLAIN = 4  # extractable, hedges, length, router logit
N_DENSE = 14  # and the self-checks: numbers (8), stated answer, numbers at the end
RESPONSE_HASHING = HashingConfig(n_bits=15, char_ngram=4, max_chars=2000)


def response_dense(prompts: Sequence[str], responses: Sequence[str],
                   answers: Sequence[str | None], router_logits: np.ndarray,
                   checks: bool = True) -> np.ndarray:
    """Dense per-response features: (n, N_DENSE), or (n, N_PLAIN) without the self-checks
    (what the FrugalGPT-style baseline's scorer reads)."""
    plain = np.array([
        [answer is not None, min(len(_HEDGES.findall(response[-1500:])), 6) / 3,
         math.log1p(len(response)) / 8, logit]
        for response, answer, logit in zip(responses, answers, router_logits, strict=True)
    ], dtype=np.float64).reshape(-1, N_PLAIN)
    if not checks:
        return plain
    rows = []
    for prompt, response, answer in zip(prompts, responses, answers, strict=True):
        claims = check_claims(response)
        unused = unused_share(prompt, response)
        rows.append([
            math.log1p(claims.held) / 3, min(claims.failed, 3) / 3,
            claims.held + claims.failed == 0,
            differs_from_last(answer, claims), is_fractional(answer),
            echoes_prompt(prompt, answer), unused > 0, unused, states_answer(response),
            math.log1p(len(set(_NUMBERS.findall(response[-300:])))) / 3,
        ])
    return np.hstack([plain, np.array(rows, dtype=np.float64).reshape(-1, N_DENSE - N_PLAIN)])


@dataclass(frozen=True)
class ResponseScorer:
    """Per-model logistic model of one response's correctness."""

    models: tuple[str, ...]
    config: HashingConfig
    weights: np.ndarray  # (n_features + N_DENSE or N_PLAIN, n_models), IDF folded in
    bias: np.ndarray  # (n_models,)

    @property
    def checks(self) -> bool:
        """Whether it reads the self-check features (its weights say)."""
        return bool(self.weights.shape[0] == self.config.n_features + N_DENSE)

    def evidence(self, model: str, prompts: Sequence[str], responses: Sequence[str],
                 answers: Sequence[str | None], router_logits: np.ndarray) -> np.ndarray:
        """Logits of P(right) for a batch of responses of one model."""
        rows = self._rows(prompts, responses, answers, router_logits)
        j = self.models.index(model)
        return np.asarray(rows.dot(self.weights[:, j]) + self.bias[j])

    def attempt(self, model: str, prompt: str, response: str, router_logit: float,
                extractor: Extractor) -> Attempt:
        """Score one live response into an :class:`Attempt` for the strategies."""
        answer = extractor(response)
        logit = self.evidence(model, [prompt], [response], [answer], np.array([router_logit]))[0]
        return Attempt(model, response, answer, float(logit))

    def probability(self, attempt: Attempt) -> float:
        """P(right) of one attempt from its evidence."""
        return sigmoid1(attempt.evidence)

    def _rows(self, prompts: Sequence[str], responses: Sequence[str],
              answers: Sequence[str | None], router_logits: np.ndarray) -> SparseRows:
        rows = hash_texts(list(responses), self.config)
        return append_dense(rows, response_dense(prompts, responses, answers, router_logits,
                                                 self.checks))


def train_response_scorer(
    models: Sequence[str],
    prompts: Sequence[str],
    responses: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str | None]],
    scores: np.ndarray,
    router_logits: np.ndarray,
    config: HashingConfig = RESPONSE_HASHING,
    fit: FitConfig = DEFAULT_FIT,
    checks: bool = True,
) -> ResponseScorer:
    """Fit one column per model; ``responses[j][i]`` is model j's response to item i."""
    n_dense = N_DENSE if checks else N_PLAIN
    n_features = config.n_features + n_dense
    weights = np.zeros((n_features, len(models)))
    bias = np.zeros(len(models))
    for j in range(len(models)):
        rows = hash_texts(list(responses[j]), config)
        idf = np.concatenate([fit_idf(rows), np.ones(n_dense)])
        rows = append_dense(rows, response_dense(prompts, responses[j], answers[j],
                                                 router_logits[:, j], checks))
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
