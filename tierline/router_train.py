"""``tierline router train``: fit the learned router, response scorer and judge on recorded
outcomes and write the bundle a policy's ``strategy.options.bundle`` names.

With ``--target S``, it also says how to use the bundle: it carves a validation slice,
trains on the rest, replays every strategy that runs live (cascades, hybrid, value
cascades) there, and prints the tiers and ``strategy`` of the cheapest one that reached
``S`` x the best single model's accuracy; the bundle itself is trained on all the data."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
import yaml
from rich.console import Console

from router.bundle import bundle_of, save_bundle
from router.dataset import Item, Prices, split_items
from router.errors import InvalidInput
from router.evaluation import Row, evaluate, plan
from router.live import policy_strategy
from router.strategies import Strategy
from router.training import train_routing
from tierline.bench_routing import check_priced, read_items, read_prices

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--prices", "prices_path", type=click.Path(path_type=Path), required=True,
              help="prices.yaml: USD per 1M input and output tokens per model")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="bundle path; writes OUT.npz and OUT.json")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="also pick the cheapest live strategy reaching this share of the best "
                   "single model's accuracy on a validation slice, and print its policy")
@click.option("--validation", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.3, show_default=True, help="share held out to pick it (with --target)")
def command(dataset: Path, prices_path: Path, out_path: Path, seed: int, target: float | None,
            validation: float) -> None:
    """Train every learned part on DATASET (all of it) and save the bundle."""
    try:
        prices = read_prices(prices_path)
        items = read_items(dataset)
        check_priced(items, prices, dataset, prices_path)
        pick = None if target is None else _pick(items, prices, seed, target, validation)
        started = time.perf_counter()
        with err.status(f"training on {len(items)} items"):
            trained = train_routing(items, prices, seed)
        npz, meta = save_bundle(bundle_of(trained), out_path)
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
    out.print(f"trained on {len(items)} items for {', '.join(trained.models)} in "
              f"{time.perf_counter() - started:.1f} s; wrote {npz} and {meta}", highlight=False)
    if pick is not None:
        row, strategy = pick
        spec = policy_strategy(strategy)
        assert spec is not None  # _pick keeps live strategies only
        spec["options"]["bundle"] = str(out_path)
        policy = {"tiers": {f"t{i}": [m] for i, m in enumerate(strategy.tiers)},
                  "strategy": spec}
        out.print(f"on the validation slice, {row.strategy} reached {row.accuracy:.3f} "
                  f"({row.accuracy_vs_best:.1%} of the best single model) at "
                  f"{row.cost_vs_best:.1%} of its cost. In the policy:", highlight=False)
        out.print(yaml.safe_dump(policy, sort_keys=False, default_flow_style=None).rstrip(),
                  highlight=False, markup=False)


def _pick(items: Sequence[Item], prices: Prices, seed: int, target: float, validation: float
          ) -> tuple[Row, Strategy]:
    """The cheapest live strategy whose validation accuracy reaches ``target`` x the best."""
    fit, val = split_items(items, validation, seed + 1)
    if not fit or not val:
        raise InvalidInput(f"{len(items)} items are too few to hold out a validation slice")
    with err.status(f"choosing a strategy: training on {len(fit)} items, replaying "
                    f"{len(val)}"):
        trained = train_routing(fit, prices, seed)
        live = {p.label: p.strategy for p in plan(trained)
                if p.kind == "tierline" and policy_strategy(p.strategy) is not None}
        report = evaluate(trained, val, prices, ["mid"] * len(val))
    rows = [r for r in report.rows if r.strategy in live]
    reached = [r for r in rows if r.accuracy_vs_best >= target]
    if not reached:
        best = max(rows, key=lambda r: r.accuracy_vs_best, default=None)
        got = "none ran" if best is None else f"the best reached {best.accuracy_vs_best:.1%}"
        raise InvalidInput(f"--target {target}: no live strategy reached it on the validation "
                           f"slice ({got})")
    row = min(reached, key=lambda r: (r.usd, -r.accuracy))
    return row, live[row.strategy]
