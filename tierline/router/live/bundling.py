"""Bundling: group routed requests into bounded messages per (tier, model, lane).

A bundle is one Celery message to a tier worker: at about a millisecond of broker and
task overhead per message, bundles of N lift a worker's ceiling about N-fold. Bundles
are cut by count and estimated tokens from what one ingress message carries; the router
never waits for later messages to fill them, so ``bundling.max_wait_s`` holds nothing
back (why: ``tierline/workers/routing.py``). Realtime and batch have different keys, so an urgent
request never rides in a batch bundle.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One routed request waiting for a bundle."""

    key: Hashable  # (tier, model, lane): only items with equal keys share a bundle
    request_id: str
    est_tokens: int
    deadline_at: float


def bundle(items: Iterable[Item], *, max_count: int, max_tokens: int) -> list[list[Item]]:
    """Split items into bundles of equal key, each within ``max_count`` and ``max_tokens``.

    A single item larger than ``max_tokens`` still travels, alone. Items keep their order,
    earliest deadline first within a key, so the most urgent leave in the first bundle.
    """
    groups: dict[Hashable, list[Item]] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    out: list[list[Item]] = []
    for group in groups.values():
        group.sort(key=lambda it: it.deadline_at)
        current: list[Item] = []
        tokens = 0
        for item in group:
            if current and (len(current) >= max_count or tokens + item.est_tokens > max_tokens):
                out.append(current)
                current, tokens = [], 0
            current.append(item)
            tokens += item.est_tokens
        if current:
            out.append(current)
    return out
