"""The learned router: per model, P(model answers correctly | prompt), from recorded outcomes.

One multi-output logistic regression over hashed prompt features (IDF folded into the
weights, so inference is one sparse-dense product per batch). The artifact is an ``.npz``
of weights plus a ``.json`` of metadata: model names, the prices it was trained with and
the feature configuration. Loading it for a policy with other models is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierline.router.errors import InvalidInput, PolicyError
from tierline.router.learned.features import (
    DEFAULT_HASHING,
    HashingConfig,
    SparseRows,
    fit_idf,
    hash_texts,
)
from tierline.router.learned.logistic import DEFAULT_FIT, FitConfig, fit_sparse, sigmoid

ARTIFACT_VERSION = 1


@dataclass(frozen=True)
class LearnedRouter:
    """Predicts each model's probability of answering a prompt correctly."""

    models: tuple[str, ...]
    usd_per_1m: dict[str, tuple[float, float]]  # (input, output) prices trained with
    config: HashingConfig
    weights: np.ndarray  # (n_features, n_models), IDF folded in
    bias: np.ndarray  # (n_models,)

    def logits_rows(self, rows: SparseRows) -> np.ndarray:
        """Logits (n, n_models) for already hashed prompts."""
        return np.asarray(rows.dot(self.weights) + self.bias)

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        """P(correct) of shape (n_prompts, n_models), columns in ``models`` order."""
        return sigmoid(self.logits_rows(hash_texts(list(prompts), self.config)))

    def check_models(self, models: Sequence[str], source: str = "<artifact>",
                     key: str = "strategy.options.bundle") -> None:
        """Refuse to serve a policy whose models differ from the ones trained for."""
        missing = sorted(set(models) - set(self.models))
        extra = sorted(set(self.models) - set(models))
        if missing or extra:
            raise PolicyError(
                source, key,
                f"learned router was trained for {list(self.models)}; the policy has no "
                f"{extra} and adds {missing}" if extra else
                f"learned router was trained for {list(self.models)}; no weights for {missing}",
            )

    def column(self, model: str) -> int:
        """Index of ``model`` in the prediction columns."""
        return self.models.index(model)


def train_learned_router(
    prompts: Sequence[str],
    scores: np.ndarray,
    models: Sequence[str],
    usd_per_1m: dict[str, tuple[float, float]],
    config: HashingConfig = DEFAULT_HASHING,
    fit: FitConfig = DEFAULT_FIT,
    rows: SparseRows | None = None,
) -> LearnedRouter:
    """Fit the router on prompts and their recorded scores (n_prompts, n_models) in [0, 1]."""
    if len(prompts) == 0:
        raise InvalidInput("learned router: the training split is empty")
    if scores.shape != (len(prompts), len(models)):
        raise InvalidInput(f"learned router: scores shape {scores.shape} does not match "
                           f"{len(prompts)} prompts x {len(models)} models")
    rows = rows if rows is not None else hash_texts(list(prompts), config)
    idf = fit_idf(rows)
    weights, bias = fit_sparse(rows.with_values(rows.values * idf[rows.indices]), scores, fit)
    return LearnedRouter(tuple(models), dict(usd_per_1m), config, weights * idf[:, None], bias)


def save_router(router: LearnedRouter, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (weights) and ``<path>.json`` (metadata); return both paths."""
    base = Path(path).with_suffix("")
    npz, meta = base.with_suffix(".npz"), base.with_suffix(".json")
    np.savez_compressed(npz, weights=router.weights.astype(np.float32), bias=router.bias)
    meta.write_text(json.dumps({
        "version": ARTIFACT_VERSION,
        "kind": "learned-router",
        "models": list(router.models),
        "usd_per_1m": {m: list(p) for m, p in router.usd_per_1m.items()},
        "features": router.config.to_dict(),
    }, indent=2), encoding="utf-8")
    return npz, meta


def load_router(path: str | Path, policy_models: Sequence[str] | None = None) -> LearnedRouter:
    """Read an artifact; with ``policy_models``, refuse one trained for other models."""
    base = Path(path).with_suffix("")
    npz, meta_path = base.with_suffix(".npz"), base.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arrays = np.load(npz)
    except (OSError, ValueError) as exc:
        raise PolicyError(str(base), "strategy.options.bundle", f"cannot read: {exc}") from exc
    if meta.get("version") != ARTIFACT_VERSION or meta.get("kind") != "learned-router":
        raise PolicyError(str(meta_path), "version", "not a learned-router artifact of version "
                          f"{ARTIFACT_VERSION}")
    router = LearnedRouter(
        models=tuple(meta["models"]),
        usd_per_1m={m: (float(p[0]), float(p[1])) for m, p in meta["usd_per_1m"].items()},
        config=HashingConfig(**meta["features"]),
        weights=arrays["weights"].astype(np.float64),
        bias=arrays["bias"].astype(np.float64),
    )
    if router.weights.shape != (router.config.n_features, len(router.models)):
        raise PolicyError(str(npz), "weights", f"shape {router.weights.shape} does not match "
                          "the feature configuration and models")
    if policy_models is not None:
        router.check_models(policy_models, str(meta_path))
    return router
