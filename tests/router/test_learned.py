"""Hashed features and the learned router: fast batch maths, learns a signal, safe artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierline.router.errors import InvalidInput, PolicyError
from tierline.router.learned.features import HashingConfig, append_dense, fit_idf, hash_texts
from tierline.router.learned.logistic import FitConfig, fit_dense
from tierline.router.learned.router import load_router, save_router, train_learned_router

SMALL = HashingConfig(n_bits=10)


def _dense(rows) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.zeros((rows.n_rows, rows.n_features))
    np.add.at(out, (rows.row_ids(), rows.indices), rows.values)
    return out


def test_sparse_products_match_dense_algebra() -> None:
    rows = hash_texts(["Hello world foo", "", "a b", "Hello  world\nfoo bar 12"], SMALL)
    dense = _dense(rows)
    w = np.random.default_rng(0).normal(size=(rows.n_features, 3))
    g = np.random.default_rng(1).normal(size=(rows.n_rows, 3))
    assert np.allclose(rows.dot(w), dense @ w)
    assert np.allclose(rows.dot(w[:, 0]), dense @ w[:, 0])
    assert np.allclose(rows.tdot(g), dense.T @ g)
    assert np.allclose(rows.take(np.array([3, 0])).dot(w), (dense @ w)[[3, 0]])


def test_hashing_does_not_depend_on_the_rest_of_the_batch() -> None:
    texts = ["The first prompt.", "Second: (A) yes (B) no", "third one, longer than the others"]
    alone = hash_texts([texts[1]], SMALL)
    batch = hash_texts(texts, SMALL).take(np.array([1]))
    assert np.array_equal(alone.indices, batch.indices)
    assert np.allclose(alone.values, batch.values)


def test_hashing_is_case_insensitive_and_deterministic() -> None:
    a = hash_texts(["Quantum Physics"], SMALL)
    b = hash_texts(["quantum physics"], SMALL)
    assert np.array_equal(a.indices, b.indices)


def test_append_dense_adds_columns_at_the_end() -> None:
    rows = hash_texts(["x y", "z"], SMALL)
    wider = append_dense(rows, np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert wider.n_features == rows.n_features + 2
    assert np.allclose(_dense(wider)[:, -2:], [[1, 2], [3, 4]])
    assert np.allclose(_dense(wider)[:, :-2], _dense(rows))


def test_idf_is_lower_for_common_features() -> None:
    rows = hash_texts(["common rare1", "common rare2", "common rare3"], SMALL)
    idf = fit_idf(rows)
    common = hash_texts(["common"], SMALL).indices[0]
    rare = hash_texts(["rare1"], SMALL).indices[0]
    assert idf[common] < idf[rare]


def _synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Model 'small' gets 'easy' prompts right, 'big' gets everything right more often."""
    rng = np.random.default_rng(seed)
    easy = rng.random(n) < 0.5
    prompts = [("easy arithmetic sum" if e else "hard proof theorem") + f" item{i}"
               for i, e in enumerate(easy)]
    small = (rng.random(n) < np.where(easy, 0.9, 0.1)).astype(float)
    big = (rng.random(n) < 0.8).astype(float)
    return prompts, np.stack([small, big], axis=1)


def test_learned_router_learns_which_model_is_right() -> None:
    prompts, scores = _synthetic(400, 0)
    router = train_learned_router(prompts, scores, ["small", "big"], {}, SMALL,
                                  FitConfig(l2=1e-3, iterations=60))
    p = router.predict(["easy arithmetic sum item", "hard proof theorem item"])
    assert p[0, 0] > 0.7 > 0.3 > p[1, 0]
    assert 0.6 < p[1, 1] < 0.95


def test_artifact_round_trips_and_refuses_other_models(tmp_path: Path) -> None:
    prompts, scores = _synthetic(100, 1)
    router = train_learned_router(prompts, scores, ["small", "big"], {"small": (0.1, 0.2),
                                  "big": (1.0, 2.0)}, SMALL, FitConfig(iterations=5))
    npz, meta = save_router(router, tmp_path / "router")
    assert npz.exists() and meta.exists()
    loaded = load_router(tmp_path / "router", ["big", "small"])
    assert loaded.models == ("small", "big") and loaded.usd_per_1m["big"] == (1.0, 2.0)
    assert np.allclose(loaded.predict(prompts[:5]), router.predict(prompts[:5]), atol=1e-5)
    with pytest.raises(PolicyError, match="huge"):
        load_router(tmp_path / "router", ["small", "huge"])


def test_empty_training_split_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        train_learned_router([], np.zeros((0, 2)), ["a", "b"], {})


def test_dense_newton_recovers_a_separating_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=500) > 0).astype(float)
    w, _ = fit_dense(x, y, l2=1e-4)
    assert w[0] > 1 and w[1] < -1
