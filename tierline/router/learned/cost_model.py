"""Expected USD of one more call, per request: prompt length and the verbosity already seen.

Input tokens are the prompt's characters times the model's tokens-per-character on the
train split; output tokens come from a per-model least-squares fit of
``log(1 + completion tokens)`` on ``log(1 + prompt chars)`` and how long-winded the responses
already paid for were (their log length minus their model's mean). A verbose cheap answer
predicts a verbose expensive one, so escalating it costs more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.strategies.steps import Attempt


def _verbosity(attempts: Sequence[Attempt], mean_log_chars: Mapping[str, float]) -> float:
    """Mean log response length of the paid attempts relative to their models' means."""
    if not attempts:
        return 0.0
    return sum(math.log1p(len(a.response)) - mean_log_chars.get(a.model, 0.0)
               for a in attempts) / len(attempts)


@dataclass(frozen=True)
class CostModel:
    """Predicts a call's USD from the prompt and the responses already received."""

    usd_per_1m: Mapping[str, tuple[float, float]]
    tokens_per_char: Mapping[str, float]
    coef: Mapping[str, tuple[float, float, float]]  # intercept, log prompt chars, verbosity
    smear: Mapping[str, float]  # mean exp(residual): unbiased back-transform
    mean_log_chars: Mapping[str, float]  # mean log1p(response chars) per model

    def expected_usd(self, model: str, prompt_chars: int, attempts: Sequence[Attempt]) -> float:
        """Expected USD of calling ``model`` now."""
        a, b, c = self.coef[model]
        log_out = a + b * math.log1p(prompt_chars) + c * _verbosity(attempts, self.mean_log_chars)
        out_tokens = math.expm1(min(log_out, 50.0)) * self.smear[model]  # e^50: no overflow
        in_tokens = prompt_chars * self.tokens_per_char[model]
        price_in, price_out = self.usd_per_1m[model]
        return (in_tokens * price_in + max(out_tokens, 0.0) * price_out) / 1e6


def fit_cost_model(models: Sequence[str], prompt_chars: np.ndarray, prompt_tokens: np.ndarray,
                   completion_tokens: np.ndarray, response_chars: np.ndarray,
                   usd_per_1m: Mapping[str, tuple[float, float]]) -> CostModel:
    """Fit on train arrays of shape (n,) for prompts and (n, n_models) for calls.

    The verbosity feature uses the cheapest model's response (column 0), the state every
    cascade is in after its first call.
    """
    log_resp = np.log1p(response_chars)
    mean_log = {m: float(log_resp[:, j].mean()) for j, m in enumerate(models)}
    verbosity = log_resp[:, 0] - mean_log[models[0]]
    x = np.stack([np.ones(len(prompt_chars)), np.log1p(prompt_chars), verbosity], axis=1)
    coef, smear, per_char = {}, {}, {}
    for j, m in enumerate(models):
        y = np.log1p(completion_tokens[:, j])
        theta, *_ = np.linalg.lstsq(x, y, rcond=None)
        if j == 0:
            theta[2] = 0.0  # the first call is made before any response exists
            theta[0] = float(np.mean(y - x[:, 1] * theta[1]))
        coef[m] = (float(theta[0]), float(theta[1]), float(theta[2]))
        smear[m] = float(np.mean(np.expm1(y)) / max(np.mean(np.expm1(x @ theta)), 1e-9))
        per_char[m] = float(prompt_tokens[:, j].sum() / max(prompt_chars.sum(), 1))
    return CostModel(dict(usd_per_1m), per_char, coef, smear, mean_log)
