"""Retraining from shadowed traffic: what ``tierline router train --from-traffic`` runs
nightly and ``tierline bench learning`` runs every N requests.

The shadowed records become items graded by agreement with the top tier
(:mod:`tierline.router.learned.traffic`). Over validation folds of them, every live operating
point and the
zero-training default are replayed; the cheapest point reaching ``target`` x the top
tier's agreement is promoted only when it is cheaper than the policy in force there
(named by its label), and the bundle is then trained on all the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices
from tierline.router.evaluation.methods import plan
from tierline.router.learned.bundle import RoutingBundle, bundle_of
from tierline.router.learned.training import train_routing
from tierline.router.strategies.basic import Cascade, Strategy
from tierline.router.strategies.learned import policy_strategy
from tierline.router.strategies.value_cascade import ValueCascade
from tierline.training.router_train import fold_means, pick_point

MIN_RECORDS = 40  # fewer shadowed records than this train nothing


@dataclass(frozen=True)
class Retrained:
    """The outcome of one retraining: promoted or not, and why."""

    promoted: bool
    why: str
    label: str | None = None
    share: float | None = None  # mean agreement share with the top tier over the folds
    cost: float | None = None  # mean cost share of the top tier's
    bundle: RoutingBundle | None = None
    strategy: Strategy | None = None


def retrain_from_traffic(items: Sequence[Item], prices: Prices, seed: int, target: float,
                         folds: int, jobs: int, in_force: str | None) -> Retrained:
    """Pick over folds, promote when cheaper than ``in_force`` at ``target``, then train."""
    if len(items) < MIN_RECORDS:
        return Retrained(False, f"{len(items)} shadowed records, fewer than {MIN_RECORDS}")
    try:
        means = fold_means(items, prices, seed, folds, jobs, untrained=True)
        label, share, cost = pick_point(means, target)
    except InvalidInput as exc:
        return Retrained(False, str(exc))
    held = means.get(in_force or "")
    # The same point as the one in force is retrained on the records it now has.
    if held is not None and in_force != label and held[0] >= target and held[1] <= cost:
        return Retrained(False, f"the policy in force ({in_force}) reached {held[0]:.1%} at "
                                f"{held[1]:.1%}, no dearer than {label} at {cost:.1%}",
                         label, share, cost)
    trained = train_routing(items, prices, seed, plain=False)
    strategy = {p.label: p.strategy for p in plan(trained)}[label]
    return Retrained(True, f"{label} reached {share:.1%} of the top tier's answers at "
                           f"{cost:.1%} of its cost over {folds} folds", label, share, cost,
                     bundle_of(trained), strategy)


def promoted_policy(strategy: Strategy, bundle_path: Path | str) -> dict[str, Any]:
    """The ``tiers`` and ``strategy`` a policy routes a retrained bundle with."""
    spec = policy_strategy(strategy)
    assert spec is not None and isinstance(strategy, Cascade | ValueCascade)
    spec["options"]["bundle"] = str(bundle_path)
    return {"tiers": {f"t{i}": [m] for i, m in enumerate(strategy.tiers)}, "strategy": spec}
