"""The router worker's work: load accepted requests, decide, record, bundle, publish.

Bundles form within one ingress message (a chunk of ids from the producer); the router
does not hold requests back across messages to fill bigger bundles. Producers of volume
already chunk (``submit_many`` sends ``bundling.ingress_chunk`` ids per message, the
sweeper and ``resume`` too), so batch traffic arrives pre-grouped; requests that arrive
one at a time are ``submit()`` calls, mostly realtime and standard, where waiting for
company spends the latency budget to save about a millisecond of broker overhead. A
cross-message buffer would also need its own durability (ids parked in Redis between the
ack of their ingress message and their bundle's publish) and a flusher on a timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from tierline import metrics
from tierline.record import records
from tierline.router.envelope import Request
from tierline.router.live.bundling import Item, bundle
from tierline.router.live.decide import Decision, decide
from tierline.router.live.guard import cap_of, guard_state, guarded
from tierline.router.strategies.learned import steps_live
from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)

# (request ids, tier, lane, resumed: some were routed before and may have paid calls)
Publish = Callable[[list[str], str, str, bool], None]


def estimate_tokens(prompt_chars: int, max_output_tokens: int) -> int:
    """Tokens a call may use at most: the prompt (characters / 4) plus the output cap."""
    return prompt_chars // 4 + 1 + max_output_tokens


def decide_now(rt: Runtime, requests: Sequence[Request], now_s: float) -> list[Decision]:
    """The policy's decisions, one tier cheaper while the cost guard is on (for a step
    machine: capped one tier below the top, tierline.router.live.guard): what the router worker
    decides,
    and what the gateway decides itself for a realtime call (tierline.gateway.chat)."""
    decisions = decide(rt.policy, rt.estimator, requests)
    spec = rt.policy.guard
    if spec is None or not decisions:
        return decisions
    state = guard_state(spec, *rt.spend.totals(now_s, spec.window_s))
    if not state.on:
        return decisions
    steps = steps_live(rt.policy)
    log.warning("cost guard on: %.6f USD per 1k tokens over the last %g s (max %g); "
                "%d new requests %s", state.usd_per_1k_tokens, spec.window_s,
                spec.usd_per_1k_tokens_max, len(decisions),
                "step one tier below the top" if steps else "start one tier cheaper")
    out = guarded(rt.policy, decisions, state, steps)
    metrics.guard_decisions([_action(before, after) for before, after in zip(decisions, out,
                                                                             strict=True)])
    return out


def _action(before: Decision, after: Decision) -> str:
    """What the guard did to one decision: ``shift``, ``cap`` or ``none``."""
    if cap_of(after) is not None:
        return "cap"
    return "shift" if after.tier != before.tier else "none"


def route(rt: Runtime, request_ids: Sequence[str], publish: Publish) -> int:
    """Route a chunk of accepted requests; returns how many bundles were published.

    Safe to run twice: decisions already stored win, finished requests are skipped.
    """
    with rt.engine.begin() as conn:
        now_s = time.time()
        pending, stored = records.load_routable(conn, request_ids, now_s)
        rerouted = set(stored)  # by resume, the sweeper or a redelivery: maybe paid already
        fresh = [r for r in pending if r.id not in stored]
        if fresh:
            stored.update(records.record_decisions(conn, decide_now(rt, fresh, now_s),
                                                    now_s))
    items = [Item(key=(stored[r.id].tier, stored[r.id].model, r.lane), request_id=r.id,
                  est_tokens=estimate_tokens(len(r.prompt_text), r.max_output_tokens),
                  deadline_at=r.deadline_at) for r in pending]
    spec = rt.policy.bundling
    bundles = bundle(items, max_count=spec.max_count, max_tokens=spec.max_tokens)
    lanes = {r.id: r.lane for r in pending}
    for group in bundles:
        first = group[0].request_id  # a bundle shares one (tier, model, lane)
        ids = [it.request_id for it in group]
        publish(ids, stored[first].tier, lanes[first], not rerouted.isdisjoint(ids))
    return len(bundles)
