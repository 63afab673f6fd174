"""L2-regularised logistic regression in numpy: sparse multi-output (Adam) and dense (Newton)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.features import SparseRows


@dataclass(frozen=True)
class FitConfig:
    """Optimiser settings; ``l2`` is per-sample (the loss is a mean)."""

    l2: float = 1e-2
    iterations: int = 40
    learning_rate: float = 0.05


DEFAULT_FIT = FitConfig()


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logit(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Inverse of :func:`sigmoid`, clipped away from 0 and 1."""
    q = np.clip(p, eps, 1 - eps)
    return np.asarray(np.log(q / (1 - q)))


def sigmoid1(z: float) -> float:
    """:func:`sigmoid` of one number, without numpy's per-call overhead (replays call it
    millions of times)."""
    return 0.5 * (1.0 + math.tanh(0.5 * z))


def logit1(p: float, eps: float = 1e-4) -> float:
    """:func:`logit` of one number."""
    q = min(max(p, eps), 1 - eps)
    return math.log(q / (1 - q))


def fit_sparse(
    rows: SparseRows, targets: np.ndarray, config: FitConfig = DEFAULT_FIT,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_features, k) and biases (k,) for targets (n, k) in [0, 1]; Adam, full batch.

    ``mask`` (n, k) of 0/1 drops entries from the loss (a row labelled for one output only).
    """
    y = targets.reshape(len(targets), -1).astype(np.float64)
    weight = np.ones_like(y) if mask is None else mask.reshape(y.shape).astype(np.float64)
    count = np.maximum(weight.sum(axis=0), 1.0)
    base = np.clip((y * weight).sum(axis=0) / count, 1e-3, 1 - 1e-3)
    w = np.zeros((rows.n_features, y.shape[1]))
    b = np.log(base / (1 - base))
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b, v_b = np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, config.iterations + 1):
        resid = (sigmoid(rows.dot(w) + b) - y) * weight / count
        g_w = rows.tdot(resid) + config.l2 * w
        g_b = resid.sum(axis=0)
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w**2
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b**2
        scale = config.learning_rate * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        w -= scale * m_w / (np.sqrt(v_w) + eps)
        b -= scale * m_b / (np.sqrt(v_b) + eps)
    return w, b


def fit_dense(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 25,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Weights (d,) and bias of a dense logistic model fitted by Newton's method."""
    n, d = x.shape
    sw = np.ones(n) if sample_weight is None else sample_weight
    xa = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * sw.sum())
    reg[-1] = 1e-9
    for _ in range(iterations):
        p = sigmoid(xa @ theta)
        grad = xa.T @ (sw * (p - y)) + reg * theta
        hess = (xa * (sw * p * (1 - p))[:, None]).T @ xa + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-7:
            break
    return theta[:-1], float(theta[-1])
