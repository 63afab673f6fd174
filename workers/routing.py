"""The router worker's work: load accepted requests, decide, record, bundle, publish."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from router.bundling import Item, bundle
from router.decide import decide
from workers import records
from workers.runtime import Runtime

Publish = Callable[[list[str], str, str], None]  # (request ids, tier, lane)


def estimate_tokens(prompt_chars: int, max_output_tokens: int) -> int:
    """Tokens a call may use at most: the prompt (characters / 4) plus the output cap."""
    return prompt_chars // 4 + 1 + max_output_tokens


def route(rt: Runtime, request_ids: Sequence[str], publish: Publish) -> int:
    """Route a chunk of accepted requests; returns how many bundles were published.

    Safe to run twice: decisions already stored win, finished requests are skipped.
    """
    with rt.engine.begin() as conn:
        now_s = time.time()
        pending, stored = records.load_routable(conn, request_ids, now_s)
        fresh = [r for r in pending if r.id not in stored]
        if fresh:
            stored.update(records.record_decisions(
                conn, decide(rt.policy, rt.estimator, fresh), now_s))
    items = [Item(key=(stored[r.id].tier, stored[r.id].model, r.lane), request_id=r.id,
                  est_tokens=estimate_tokens(len(r.prompt_text), r.max_output_tokens),
                  deadline_at=r.deadline_at) for r in pending]
    spec = rt.policy.bundling
    bundles = bundle(items, max_count=spec.max_count, max_tokens=spec.max_tokens)
    for group in bundles:
        tier, _model, lane = group[0].key  # type: ignore[misc]
        publish([it.request_id for it in group], tier, lane)
    return len(bundles)
