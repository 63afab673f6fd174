"""Nightly retraining from live shadow outcomes, the task beat sends.

It reads the shadowed requests from the record (``shadow_outcomes``,
tierline.workers.engine.shadow), turns
them into traffic records (tierline.router.learned.traffic) and runs the same code as ``tierline
router
train --from-traffic`` (tierline.training.traffic_train): every operating point is validated on
held-back folds of that traffic against the policy in force (the promoted bundle's label,
else the zero-training default's), and a new bundle is written, recorded and promoted only
when it is cheaper at the same share of the top tier's answers. Otherwise nothing is
written and the reason is logged and returned.

Schedule: the policy's ``learning.retrain_schedule`` (cron, UTC), overridden by
``$TIERLINE_RETRAIN_SCHEDULE``; ``off`` in either disables it, and with no ``learning``
section there is none. Bundles are written to ``$TIERLINE_BUNDLE_DIR`` (default: the
``bundles`` folder beside the policy file), one name per run, so older ones stay for a
rollback. Safe to run twice: a second run trains again and promotes only if it is cheaper.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tierline.config.settings import Settings
from tierline.record import bundles
from tierline.record.shadow_record import traffic_records
from tierline.router.policy import Policy
from tierline.workers.app import app
from tierline.workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)

RETRAIN_TASK = "tierline.retrain_router"
GRADER = "recorded"  # answers read as a choice letter, else a number, else the text
TARGET = 0.9  # the share of the top tier's answers a promoted point must keep
FOLDS = 5


def retrain_schedule_of(policy: Policy, settings: Settings) -> str:
    """When beat retrains: the settings' cron (``$TIERLINE_RETRAIN_SCHEDULE``), else the
    policy's; ``off`` when neither asks for it."""
    if settings.retrain_schedule:
        return settings.retrain_schedule
    return "off" if policy.learning is None else policy.learning.retrain_schedule


def in_force_label(policy: Policy, promoted: Mapping[str, Any] | None) -> str | None:
    """The operating point a candidate must beat: the promoted bundle's, else the
    zero-training default's."""
    if promoted is not None:
        return str(promoted["label"])
    if policy.strategy.kind == "agreement":
        return f"untrained agree-{int(policy.strategy.options.get('panel', 2))}>top"
    return None


def _same_models(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records holding the most common set of models: the learner trains on one set."""
    if not records:
        return []
    sets = Counter(frozenset(r["outcomes"]) for r in records)
    wanted = sets.most_common(1)[0][0]
    return [r for r in records if frozenset(r["outcomes"]) == wanted]


def retrain(rt: Runtime, now_s: float, bundle_dir: Path, *, seed: int = 0,
            target: float = TARGET, folds: int = FOLDS) -> dict[str, Any]:
    """Retrain from the recorded shadow outcomes; promote when cheaper. Returns what it did."""
    # Beat is a producer (DESIGN's flow): retraining is the front door's code.
    from tierline.router.errors import InvalidInput
    from tierline.router.learned.bundle import save_bundle
    from tierline.router.learned.traffic import items_from_traffic
    from tierline.training.traffic_train import promoted_policy, retrain_from_traffic

    with rt.engine.connect() as conn:
        records = _same_models(traffic_records(conn))
        current = bundles.promoted(conn)
    in_force = in_force_label(rt.policy, current)
    outcome: dict[str, Any] = {"records": len(records), "in_force": in_force,
                               "promoted": False}
    try:
        items = items_from_traffic(records, GRADER, "shadow_outcomes")
        prices = {m: (rt.policy.models[m].usd_per_1m_input, rt.policy.models[m].usd_per_1m_output)
                  for m in (items[0].outcomes if items else ())}
        result = retrain_from_traffic(items, prices, seed, target, folds, 1, in_force)
    except (InvalidInput, KeyError) as exc:  # a model no longer in the policy, a bad record
        outcome["why"] = f"nothing trained: {exc}"
        log.warning("retraining: %s", outcome["why"])
        return outcome
    outcome.update(why=result.why, label=result.label)
    if not result.promoted or result.bundle is None or result.strategy is None:
        log.info("retraining on %d shadowed requests: not promoted: %s", len(records),
                 result.why)
        return outcome
    bundle_dir.mkdir(parents=True, exist_ok=True)
    path = bundle_dir / time.strftime("traffic-%Y%m%d-%H%M%S", time.gmtime(now_s))
    save_bundle(result.bundle, path)
    policy = promoted_policy(result.strategy, path)
    with rt.engine.begin() as conn:
        bundle_id = bundles.register(conn, str(path.resolve()), policy, str(result.label), {
            "records": len(items), "target": target, "share_of_top": round(result.share or 0, 4),
            "cost_vs_top": round(result.cost or 0, 4), "in_force": in_force,
            "trained_by": "beat"}, now_s, promote=True)
    log.info("retraining on %d shadowed requests: promoted bundle %s (%s)", len(records),
             bundle_id, result.why)
    outcome.update(promoted=True, bundle_id=bundle_id, path=str(path))
    return outcome


def bundle_dir_of(rt: Runtime) -> Path:
    """Where retrained bundles are written: ``$TIERLINE_BUNDLE_DIR``, else beside the policy."""
    return rt.settings.bundle_dir or rt.settings.policy_path.parent / "bundles"


@app.task(name=RETRAIN_TASK)
def retrain_router() -> dict[str, Any]:
    """Retrain the router from the recorded shadow outcomes; promote when cheaper."""
    rt = runtime()
    return retrain(rt, time.time(), bundle_dir_of(rt))
