"""``tierline router train``: fit the learned router, response scorer and judge on recorded
outcomes and write the bundle a policy's ``strategy.options.bundle`` names."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console

from router.bundle import bundle_of, save_bundle
from router.errors import InvalidInput
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
def command(dataset: Path, prices_path: Path, out_path: Path, seed: int) -> None:
    """Train every learned part on DATASET (all of it) and save the bundle."""
    try:
        prices = read_prices(prices_path)
        items = read_items(dataset)
        check_priced(items, prices, dataset, prices_path)
        started = time.perf_counter()
        with err.status(f"training on {len(items)} items"):
            trained = train_routing(items, prices, seed)
        npz, meta = save_bundle(bundle_of(trained), out_path)
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
    out.print(f"trained on {len(items)} items for {', '.join(trained.models)} in "
              f"{time.perf_counter() - started:.1f} s; wrote {npz} and {meta}", highlight=False)
