"""Synthetic recorded outcomes for the routing tests, in the format of
../shared/data/routing: four-way choice questions whose models are right with given
probabilities (the wrong ones all pick the next letter)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tierline.router.evaluation.dataset import Item, parse_items

# model -> P(right), for every item or per item index
Accuracy = Mapping[str, float] | Callable[[int], Mapping[str, float]]


def lines(n: int, accuracy: Accuracy, *, seed: int = 0,
          prompt: Callable[[int], str] = lambda i: f"question {i}", kind: str = "choice",
          completion_tokens: Callable[[int], int] = lambda i: 30,
          clones: Mapping[str, str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``n`` numbered JSON lines; a clone repeats its source model's outcomes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        key = "ABCD"[i % 4]
        chances = accuracy(i) if callable(accuracy) else accuracy
        outcomes = {}
        for m, p in chances.items():
            a = key if rng.random() < p else "ABCD"[(i + 1) % 4]
            outcomes[m] = {"response": f"so the answer is ({a})", "answer": a,
                           "score": float(a == key), "prompt_tokens": 40,
                           "completion_tokens": completion_tokens(i)}
        outcomes |= {c: outcomes[src] for c, src in (clones or {}).items()}
        grader = {"kind": kind, "answer": key} if kind == "choice" else {"kind": kind}
        out.append((i + 1, {"id": f"s/{i}", "prompt": prompt(i), "grader": grader,
                            "outcomes": outcomes}))
    return out


def items(n: int, accuracy: Accuracy, **options: Any) -> list[Item]:
    """The same, parsed."""
    return parse_items(lines(n, accuracy, **options))


def easy_or_hard(cheap: str, others: Mapping[str, float]) -> Callable[[int], dict[str, float]]:
    """Even items are easy (``cheap`` is right on 95%), odd ones hard (5%); the rest keep
    their accuracy. Pair with :func:`easy_hard_prompt`."""
    return lambda i: {cheap: 0.95 if i % 2 == 0 else 0.05, **others}


def easy_hard_prompt(i: int) -> str:
    return f"question {i}: {EASY if i % 2 == 0 else HARD}"


EASY, HARD = "the spelling of a common word", "the proof of a deep theorem"
