"""Re-implemented baseline routers: RouterBench's kNN and a RouteLLM-style weak/strong score.

* kNN (RouterBench): the k nearest training prompts (cosine over TF-IDF hashed words) vote
  on each model's accuracy; the router then maximises accuracy - lambda x cost share.
* RouteLLM-style: P(the weak model is enough | prompt), a logistic model trained on the
  label "weak scored at least as well as strong"; route to weak above a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.features import HashingConfig, SparseRows, fit_idf, hash_texts
from tierline.router.learned.logistic import DEFAULT_FIT, FitConfig
from tierline.router.learned.router import LearnedRouter, train_learned_router

KNN_HASHING = HashingConfig(n_bits=12, word_bigrams=False, char_ngram=0, max_chars=3000)


def _dense_unit(rows: SparseRows, idf: np.ndarray, n_dims: int) -> np.ndarray:
    """Rows as dense L2-normalised float32 vectors over the hashed part (meta dropped)."""
    keep = rows.indices < n_dims
    flat = rows.row_ids()[keep].astype(np.int64) * n_dims + rows.indices[keep]
    weights = (rows.values * idf[rows.indices])[keep]
    dense = np.bincount(flat, weights=weights, minlength=rows.n_rows * n_dims)
    dense = dense.reshape(rows.n_rows, n_dims).astype(np.float32)
    return np.asarray(dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-9))


@dataclass(frozen=True)
class KnnRouter:
    """Predicts each model's accuracy as the mean over the k nearest training prompts."""

    config: HashingConfig
    idf: np.ndarray
    vectors: np.ndarray  # (n_train, n_dims), unit rows
    scores: np.ndarray  # (n_train, n_models)
    k: int

    def predict(self, prompts: Sequence[str], chunk: int = 512) -> np.ndarray:
        """Mean neighbour score per model, shape (n_prompts, n_models)."""
        rows = hash_texts(list(prompts), self.config)
        query = _dense_unit(rows, self.idf, self.config.n_hashed)
        k = min(self.k, len(self.vectors))
        out = np.empty((len(query), self.scores.shape[1]))
        for start in range(0, len(query), chunk):
            sims = query[start : start + chunk] @ self.vectors.T
            near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out[start : start + chunk] = self.scores[near].mean(axis=1)
        return out


def train_knn(prompts: Sequence[str], scores: np.ndarray, k: int = 40,
              config: HashingConfig = KNN_HASHING) -> KnnRouter:
    """Index the training prompts."""
    rows = hash_texts(list(prompts), config)
    idf = fit_idf(rows)
    return KnnRouter(config, idf, _dense_unit(rows, idf, config.n_hashed), scores, k)


def train_weak_enough(prompts: Sequence[str], weak_scores: np.ndarray, strong_scores: np.ndarray,
                      weak: str, strong: str, fit: FitConfig = DEFAULT_FIT,
                      rows: SparseRows | None = None) -> LearnedRouter:
    """RouteLLM-style: one output, P(weak scores at least as well as strong)."""
    label = (weak_scores >= strong_scores).astype(np.float64)[:, None]
    return train_learned_router(prompts, label, [f"{weak}>={strong}"], {}, fit=fit, rows=rows)
