"""Everything a live cascade needs, as one artifact: ``<path>.npz`` arrays + ``<path>.json``.

The bundle holds the learned router, the response scorer, the judge, the lookahead and the
cost model, with the model names and prices they were trained for; loading it for a policy
with other models is refused, naming the difference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierline.router.errors import PolicyError
from tierline.router.learned.confidence import ResponseScorer
from tierline.router.learned.cost_model import CostModel
from tierline.router.learned.features import HashingConfig
from tierline.router.learned.judge import Judge
from tierline.router.learned.lookahead import Lookahead
from tierline.router.learned.router import LearnedRouter
from tierline.router.learned.training import TrainedRouting

BUNDLE_VERSION = 2


@dataclass(frozen=True)
class RoutingBundle:
    """The trained parts a router task and a tier worker load at process start."""

    models: tuple[str, ...]  # cheapest first
    usd_per_call: dict[str, float]
    extractor: str
    router: LearnedRouter
    scorer: ResponseScorer
    judge: Judge
    lookahead: Lookahead
    costs: CostModel


def bundle_of(trained: TrainedRouting) -> RoutingBundle:
    """The live parts of a training run."""
    return RoutingBundle(trained.models, trained.usd_per_call, trained.extractor, trained.router,
                         trained.scorer, trained.judge, trained.lookahead, trained.costs)


def save_bundle(bundle: RoutingBundle, path: str | Path) -> tuple[Path, Path]:
    """Write the arrays and the metadata; return both paths."""
    base = Path(path).with_suffix("")
    npz, meta = base.with_suffix(".npz"), base.with_suffix(".json")
    np.savez_compressed(
        npz, router_w=bundle.router.weights.astype(np.float32), router_b=bundle.router.bias,
        scorer_w=bundle.scorer.weights.astype(np.float32), scorer_b=bundle.scorer.bias,
        judge_w=bundle.judge.weights, look_w=bundle.lookahead.weights,
    )
    costs = bundle.costs
    meta.write_text(json.dumps({
        "version": BUNDLE_VERSION, "kind": "routing-bundle", "models": list(bundle.models),
        "usd_per_call": bundle.usd_per_call, "extractor": bundle.extractor,
        "usd_per_1m": {m: list(p) for m, p in bundle.router.usd_per_1m.items()},
        "router_features": bundle.router.config.to_dict(),
        "scorer_features": bundle.scorer.config.to_dict(),
        "judge_bias": bundle.judge.bias, "lookahead_bias": bundle.lookahead.bias,
        "costs": {"usd_per_1m": {m: list(p) for m, p in costs.usd_per_1m.items()},
                  "tokens_per_char": dict(costs.tokens_per_char),
                  "coef": {m: list(c) for m, c in costs.coef.items()},
                  "smear": dict(costs.smear), "mean_log_chars": dict(costs.mean_log_chars)},
    }, indent=1), encoding="utf-8")
    return npz, meta


def load_bundle(path: str | Path, policy_models: Sequence[str] | None = None,
                key: str = "strategy.options.bundle") -> RoutingBundle:
    """Read a bundle; with ``policy_models``, refuse one trained for other models (errors
    name the policy ``key`` that points at it)."""
    base = Path(path).with_suffix("")
    try:
        meta: dict[str, Any] = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
        arrays = np.load(base.with_suffix(".npz"))
    except (OSError, ValueError) as exc:
        raise PolicyError(str(base), key, f"cannot read: {exc}") from exc
    if meta.get("kind") != "routing-bundle" or meta.get("version") != BUNDLE_VERSION:
        raise PolicyError(str(base), "version", f"not a routing bundle of version {BUNDLE_VERSION}")
    models = tuple(meta["models"])
    prices = {m: (float(p[0]), float(p[1])) for m, p in meta["usd_per_1m"].items()}
    router = LearnedRouter(models, prices, HashingConfig(**meta["router_features"]),
                           arrays["router_w"].astype(np.float64), arrays["router_b"])
    if policy_models is not None:
        router.check_models(policy_models, str(base), key)
    c = meta["costs"]
    costs = CostModel({m: (float(p[0]), float(p[1])) for m, p in c["usd_per_1m"].items()},
                      c["tokens_per_char"], {m: tuple(v) for m, v in c["coef"].items()},
                      c["smear"], c["mean_log_chars"])
    return RoutingBundle(
        models, {m: float(v) for m, v in meta["usd_per_call"].items()}, meta["extractor"], router,
        ResponseScorer(models, HashingConfig(**meta["scorer_features"]),
                       arrays["scorer_w"].astype(np.float64), arrays["scorer_b"]),
        Judge(models, arrays["judge_w"], float(meta["judge_bias"])),
        Lookahead(models, arrays["look_w"], float(meta["lookahead_bias"])),
        costs,
    )

