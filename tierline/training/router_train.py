"""``tierline router train``: fit the learned router, response scorer and judge on recorded
outcomes and write the bundle a policy's ``strategy.options.bundle`` names.

With ``--target S``, it also says how to use the bundle: over validation folds (each
trains on the rest), it replays every operating point that runs live (cascades, hybrid,
value cascades) and prints the tiers and ``strategy`` of the one that reached ``S`` x the
best single model's accuracy on average at the least mean cost; the bundle itself is
trained on all the data, and the point is rebuilt from it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices, fold_items
from tierline.router.evaluation.methods import evaluate, plan
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.traffic import items_from_traffic
from tierline.router.learned.training import train_routing
from tierline.router.strategies.basic import Cascade
from tierline.router.strategies.learned import policy_strategy
from tierline.router.strategies.value_cascade import ValueCascade
from tierline.router.untrusted import loads
from tierline.training.folds import default_jobs, run_folds
from tierline.training.inputs import check_priced, read_items, read_prices

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def read_traffic(path: Path) -> list[Any]:
    """A traffic file's records (JSONL, in the shape of tierline.router.learned.traffic);
    errors name the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read traffic: {exc}") from exc
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append(loads(line))
            except InvalidInput as exc:
                raise InvalidInput(f"{path}: line {number}: {exc}") from exc
    if not records:
        raise InvalidInput(f"{path}: no shadowed records (the file is empty)")
    return records


def _from_traffic(path: Path, prices: Prices, out_path: Path, seed: int, target: float,
                  folds: int, jobs: int, grader: str, in_force: str | None,
                  record: bool) -> None:
    """Retrain from shadowed traffic; write the bundle and print its policy if promoted."""
    from tierline.training.traffic_train import promoted_policy, retrain_from_traffic

    items = items_from_traffic(read_traffic(path), grader, str(path))
    check_priced(items, prices, path, Path("--prices"))
    result = retrain_from_traffic(items, prices, seed, target, folds, jobs, in_force)
    if not result.promoted or result.bundle is None or result.strategy is None:
        out.print(f"not promoted: {result.why}", highlight=False, markup=False)
        return
    npz, meta = save_bundle(result.bundle, out_path)
    policy = promoted_policy(result.strategy, out_path)
    out.print(f"promoted: {result.why}; wrote {npz} and {meta}. In the policy:",
              highlight=False, markup=False)
    if record:
        bundle_id = _record(out_path, policy, str(result.label), {
            "records": len(items), "target": target,
            "share_of_top": round(result.share or 0.0, 4),
            "cost_vs_top": round(result.cost or 0.0, 4)})
        out.print(f"recorded as bundle {bundle_id}, promoted (tierline router bundles list)",
                  highlight=False)
    out.print(yaml.safe_dump(policy, sort_keys=False, default_flow_style=None).rstrip(),
              highlight=False, markup=False)


def _record(path: Path, policy: dict[str, Any], label: str, metrics: dict[str, Any]) -> str:
    """Register a promoted bundle in the database the settings name."""
    import time

    from tierline.config.settings import settings_in_force
    from tierline.record.bundles import register
    from tierline.record.db import engine_for, upgrade

    url = settings_in_force().database_url
    upgrade(url)
    with engine_for(url).begin() as conn:
        return register(conn, str(path.resolve()), policy, label, metrics, time.time(),
                        promote=True)


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@click.option("--record", is_flag=True,
              help="with --from-traffic: register a promoted bundle in the database "
                   "(tierline router bundles)")
@click.option("--from-traffic", "traffic_path", type=click.Path(path_type=Path), default=None,
              help="train on shadowed traffic (graded by agreement with the top tier) "
                   "instead of DATASET; promotes only a point cheaper than --in-force")
@click.option("--grader", type=click.Choice(["choice", "recorded"]), default="recorded",
              show_default=True, help="with --from-traffic: how answers are read "
                                      "(choice letters, or letters then numbers)")
@click.option("--in-force", default=None,
              help="with --from-traffic: the label of the policy in force, kept unless beaten")
@click.option("--prices", "prices_path", type=click.Path(path_type=Path), required=True,
              help="prices.yaml: USD per 1M input and output tokens per model")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="bundle path; writes OUT.npz and OUT.json")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="also pick the cheapest live strategy reaching this share of the best "
                   "single model's accuracy over validation folds, and print its policy")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="validation folds that pick it (with --target)")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="validation folds run at once, one process each  [default: one per core]")
def command(dataset: Path | None, record: bool, traffic_path: Path | None, grader: str,
            in_force: str | None,
            prices_path: Path, out_path: Path, seed: int, target: float | None,
            folds: int, jobs: int | None) -> None:
    """Train every learned part on DATASET (all of it), or on shadowed traffic, and save
    the bundle."""
    try:
        if (dataset is None) == (traffic_path is None):
            raise InvalidInput("give either DATASET or --from-traffic FILE")
        prices = read_prices(prices_path)
        if traffic_path is not None:
            _from_traffic(traffic_path, prices, out_path, seed, target or 0.9, folds,
                          jobs or default_jobs(folds), grader, in_force, record)
            return
        assert dataset is not None
        items = read_items(dataset)
        check_priced(items, prices, dataset, prices_path)
        pick = (None if target is None else
                _pick(items, prices, seed, target, folds, jobs or default_jobs(folds)))
        started = time.perf_counter()
        with err.status(f"training on {len(items)} items"):
            trained = train_routing(items, prices, seed, plain=False)
        npz, meta = save_bundle(bundle_of(trained), out_path)
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
    out.print(f"trained on {len(items)} items for {', '.join(trained.models)} in "
              f"{time.perf_counter() - started:.1f} s; wrote {npz} and {meta}", highlight=False)
    if pick is not None:
        label, share, cost = pick
        strategy = {p.label: p.strategy for p in plan(trained)}[label]
        spec = policy_strategy(strategy)
        # _pick keeps live strategies only: cascades, value cascades
        assert spec is not None and isinstance(strategy, Cascade | ValueCascade)
        spec["options"]["bundle"] = str(out_path)
        policy = {"tiers": {f"t{i}": [m] for i, m in enumerate(strategy.tiers)},
                  "strategy": spec}
        out.print(f"over {folds} validation folds, {label} reached {share:.1%} of the best "
                  f"single model's accuracy at {cost:.1%} of its cost, on average. In the "
                  "policy:", highlight=False)
        out.print(yaml.safe_dump(policy, sort_keys=False, default_flow_style=None).rstrip(),
                  highlight=False, markup=False)


def _live_shares(fit: Sequence[Item], val: Sequence[Item], prices: Prices, seed: int,
                 untrained: bool = False) -> dict[str, tuple[float, float]]:
    """One fold: every live point's accuracy and cost as shares of the best single model's
    (``untrained``: the zero-training default's points too)."""
    trained = train_routing(fit, prices, seed)
    live = {p.label for p in plan(trained)
            if (p.kind == "tierline" and policy_strategy(p.strategy) is not None)
            or (untrained and p.kind == "untrained")}
    return {r.strategy: (r.accuracy_vs_best, r.cost_vs_best)
            for r in evaluate(trained, val, prices, ["mid"] * len(val)).rows if r.strategy in live}


def fold_means(items: Sequence[Item], prices: Prices, seed: int, folds: int, jobs: int,
               untrained: bool = False) -> dict[str, tuple[float, float]]:
    """Every live point's mean accuracy and cost shares over ``folds`` validation folds."""
    pairs = fold_items(items, folds, seed + 1)
    if min(min(len(fit), len(val)) for fit, val in pairs) == 0:
        raise InvalidInput(f"{len(items)} items are too few for {folds} validation folds")
    note = (f"choosing a strategy over {folds} folds ({jobs} at a time, each training on "
            f"about {len(pairs[0][0])} items): {{}} done")
    with err.status(note.format(0)) as status:
        per_fold = run_folds(partial(_live_shares, prices=prices, seed=seed,
                                     untrained=untrained), pairs, jobs,
                             lambda n: status.update(note.format(n)))
    shares: dict[str, list[tuple[float, float]]] = {}
    for fold in per_fold:
        for label, point in fold.items():
            shares.setdefault(label, []).append(point)
    return {label: (sum(a for a, _ in v) / len(v), sum(c for _, c in v) / len(v))
            for label, v in shares.items() if len(v) == folds}


def _pick(items: Sequence[Item], prices: Prices, seed: int, target: float, folds: int,
          jobs: int) -> tuple[str, float, float]:
    """The live operating point that reaches ``target`` x the best single model's accuracy
    on average over the folds at the least mean cost: its label, accuracy and cost shares."""
    return pick_point(fold_means(items, prices, seed, folds, jobs), target)


def pick_point(means: dict[str, tuple[float, float]], target: float) -> tuple[str, float, float]:
    """The cheapest point whose mean accuracy share reaches ``target`` (InvalidInput if none)."""
    reached = [(cost, -share, label) for label, (share, cost) in means.items()
               if share >= target and not label.startswith("untrained")]
    if not reached:
        best = max((share for share, _ in means.values()), default=None)
        got = "none ran" if best is None else f"the best reached {best:.1%}"
        raise InvalidInput(f"--target {target}: no live strategy reached it on average over "
                           f"the validation folds ({got})")
    cost, share, label = min(reached)
    return label, -share, cost
