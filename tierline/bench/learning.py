"""`tierline bench learning`: a recorded-outcome dataset replayed as a stream of traffic,
routed from day one with no bundle, learning from its own shadowed requests.

The stream starts on the zero-training default (tierline.router.strategies.agreement). A sample
of requests
(``--shadow-rate``) is also sent to the top tier and the other tiers the learner trains
on; those calls are paid for and counted. Every ``--retrain-every`` requests, the shadowed
records go through the code ``tierline router train --from-traffic`` runs
(tierline/training/traffic_train.py), graded only by agreement with the top tier's answer; a new
bundle is promoted when it is cheaper there than the policy in force. With
``--first-retrain N0`` the first retrainings come earlier, after N0, 2 N0, 4 N0 ...
requests up to ``--retrain-every`` (the nightly job also runs on whatever traffic a young
deployment has); ``--warm-shadow-rate`` shadows more until ``--warm-records`` requests are
shadowed, as the policy's ``learning.warm_shadow_rate`` does live. The dataset's
scores measure each window against the best single model; the learner never reads them.
The reference is a bundle trained offline on the recorded scores of every request before
the last window: its cost on the last window at the accuracy the stream reached there.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices, call_usd, models_of
from tierline.router.evaluation.frontier import cost_to_reach
from tierline.router.evaluation.learning import (
    Parts,
    WindowRow,
    retrains_at,
    serve,
    shadow_models,
    window_row,
)
from tierline.router.evaluation.methods import evaluate
from tierline.router.learned.answers import EXTRACTOR_FOR_GRADER
from tierline.router.learned.traffic import items_from_traffic, traffic_record
from tierline.router.learned.training import train_routing
from tierline.router.live.shadowing import rate_now
from tierline.router.strategies.agreement import Agreement, untrained_parts
from tierline.router.strategies.basic import Strategy
from tierline.router.strategies.learned import policy_strategy
from tierline.training.folds import default_jobs
from tierline.training.inputs import check_priced, read_items, read_prices
from tierline.training.traffic_train import retrain_from_traffic

out = Console()
if not out.is_terminal:
    out.width = 150
err = Console(stderr=True, soft_wrap=True)


def offline_cost(before: Sequence[Item], last: Sequence[Item], prices: Prices, seed: int,
                 accuracy_vs_best: float) -> float | None:
    """The reference: every live point of a bundle trained on the recorded scores of
    ``before``, replayed on ``last``; the least cost share reaching ``accuracy_vs_best``."""
    trained = train_routing(before, prices, seed)
    report = evaluate(trained, last, prices, ["mid"] * len(last))
    live = {label for label, _ in _live_labels(trained)}
    points = [(r.cost_vs_best, r.accuracy_vs_best) for r in report.rows if r.strategy in live]
    return cost_to_reach(points, accuracy_vs_best) if points else None


def _live_labels(trained: Any) -> list[tuple[str, Strategy]]:
    from tierline.router.evaluation.methods import plan

    return [(p.label, p.strategy) for p in plan(trained)
            if p.kind == "tierline" and policy_strategy(p.strategy) is not None]


def replay_stream(items: Sequence[Item], prices: Prices, shadow_rate: float,
                  retrain_every: int, seed: int, target: float, folds: int, jobs: int,
                  first_retrain: int | None = None, warm_rate: float | None = None,
                  warm_records: int = 200
                  ) -> tuple[list[WindowRow], WindowRow, list[str]]:
    """Serve the stream; return the per-window rows, the whole stream's, and the log."""
    models = models_of(items, prices)
    kind = items[0].grader_kind
    untrained = Agreement(tuple(models), 2)
    learned = [*untrained.asked_first, untrained.target]  # the models the learner trains on
    top = untrained.target
    parts: Parts = untrained_parts(models, EXTRACTOR_FOR_GRADER[kind])
    strategy: Strategy = untrained
    in_force = f"untrained agree-{len(untrained.asked_first)}>top"
    learner_prices = {m: prices[m] for m in learned}
    rng = np.random.default_rng(seed + 7)
    records: list[dict[str, Any]] = []
    correct, usd, shadow, routed_by = [], [], [], []
    log = []
    for k, item in enumerate(items):
        if retrains_at(k, retrain_every, first_retrain or retrain_every):
            started = time.perf_counter()
            result = retrain_from_traffic(items_from_traffic(records, kind), learner_prices,
                                          seed, target, folds, jobs, in_force)
            if result.promoted and result.bundle is not None and result.strategy is not None:
                parts, strategy, in_force = result.bundle, result.strategy, str(result.label)
            line = (f"request {k}: {len(records)} shadowed records: "
                    f"{'promoted' if result.promoted else 'kept ' + in_force}: {result.why} "
                    f"({time.perf_counter() - started:.0f} s)")
            log.append(line)
            err.print(line, highlight=False, markup=False)
        served = serve(strategy, parts, item, prices)
        spent = 0.0
        if rng.random() < rate_now(shadow_rate, warm_rate, warm_records, len(records)):
            spent = sum(call_usd(item.outcomes[m], prices[m])
                        for m in shadow_models(learned, served.called))
            records.append(traffic_record(item.id, item.prompt, top,
                                          {m: item.outcomes[m] for m in learned}))
        correct.append(served.correct)
        usd.append(served.usd + spent)
        shadow.append(spent)
        routed_by.append(in_force)
    rows = []
    for w, start in enumerate(range(0, len(items), retrain_every)):
        end = min(start + retrain_every, len(items))
        rows.append(window_row(str(w), items[start:end], correct[start:end], usd[start:end],
                               shadow[start:end], prices, routed_by[start]))
    whole = window_row("all", items, correct, usd, shadow, prices, routed_by[-1])
    return rows, whole, log


def _table(rows: Sequence[WindowRow], whole: WindowRow, offline: float | None) -> Table:
    table = Table(title="the stream by window (costs include shadow calls)")
    for col in ("window", "requests", "accuracy", "acc/best", "USD/1k req", "USD/best",
                "shadow USD/1k", "routed by"):
        table.add_column(col, justify="left" if col in ("window", "routed by") else "right")
    for r in [*rows, whole]:
        table.add_row(r.window, str(r.requests), f"{r.accuracy:.3f}", f"{r.accuracy_vs_best:.1%}",
                      f"{r.usd * 1000:.4f}", f"{r.cost_vs_best:.1%}",
                      f"{r.shadow_usd * 1000:.4f}", r.strategy)
    last = rows[-1]
    table.add_row("offline (last window)", str(last.requests), "", f"{last.accuracy_vs_best:.1%}",
                  "", "not reached" if offline is None else f"{offline:.1%}", "",
                  "bundle trained on the recorded scores before it")
    return table


@click.command()
@click.option("--traffic", "traffic_path", type=click.Path(path_type=Path), required=True,
              help="recorded-outcome JSONL replayed as the stream of requests")
@click.option("--prices", "prices_path", type=click.Path(path_type=Path), required=True)
@click.option("--shadow-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="share of requests also sent to the top tier (and the learner's tiers)")
@click.option("--retrain-every", type=click.IntRange(min=10), default=1000, show_default=True,
              help="requests between retrainings (also the window of the report)")
@click.option("--first-retrain", type=click.IntRange(min=10), default=None,
              help="requests before the first retraining, doubling up to --retrain-every "
                   "[default: --retrain-every]")
@click.option("--warm-shadow-rate", "warm_rate", type=click.FloatRange(0, 1), default=None,
              help="shadow rate while fewer than --warm-records requests are shadowed "
                   "(the policy's learning.warm_shadow_rate)")
@click.option("--warm-records", type=click.IntRange(min=0), default=200, show_default=True,
              help="shadowed requests after which --shadow-rate holds")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              show_default=True,
              help="share of the reference answers (the shadowed models' majority) that a "
                   "promoted point must give")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="validation folds run at once  [default: one per core]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
def command(traffic_path: Path, prices_path: Path, shadow_rate: float, retrain_every: int,
            first_retrain: int | None, warm_rate: float | None, warm_records: int, seed: int,
            target: float, folds: int, jobs: int | None,
            json_path: Path | None) -> None:
    """Replay a dataset as traffic that starts with no bundle and learns from shadowing."""
    try:
        prices = read_prices(prices_path)
        items = read_items(traffic_path)
        check_priced(items, prices, traffic_path, prices_path)
        if len(items) < 2 * retrain_every:
            raise InvalidInput(f"{traffic_path}: {len(items)} requests are fewer than two "
                               f"windows of --retrain-every {retrain_every}")
        order = np.random.default_rng(seed).permutation(len(items))
        stream = [items[i] for i in order]
        started = time.perf_counter()
        rows, whole, _ = replay_stream(stream, prices, shadow_rate, retrain_every, seed,
                                       target, folds, jobs or default_jobs(folds),
                                       first_retrain, warm_rate, warm_records)
        last_start = (len(stream) - 1) // retrain_every * retrain_every
        with err.status("training the offline reference"):
            offline = offline_cost(stream[:last_start], stream[last_start:], prices, seed,
                                   rows[-1].accuracy_vs_best)
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
    out.print(_table(rows, whole, offline))
    ratio = None if offline is None or offline <= 0 else rows[-1].cost_vs_best / offline
    out.print(f"whole stream: {whole.accuracy_vs_best:.1%} of {whole.best_single}'s accuracy at "
              f"{whole.cost_vs_best:.1%} of its cost (shadow included); last window "
              + ("cost against the offline bundle's at that accuracy: not reached offline"
                 if ratio is None else f"{ratio:.2f}x the offline bundle's cost at that accuracy")
              + f"; {time.perf_counter() - started:.0f} s", highlight=False)
    if json_path is not None:
        keys = ("window", "requests", "accuracy", "usd", "accuracy_vs_best", "cost_vs_best",
                "shadow_usd")
        data: list[dict[str, Any]] = [{**{k: r.to_dict()[k] for k in keys},
                                       "best_single": r.best_single, "routed_by": r.strategy}
                                      for r in [*rows, whole]]
        data.append({"window": "offline", "requests": rows[-1].requests,
                     "accuracy_vs_best": rows[-1].accuracy_vs_best, "cost_vs_best": offline,
                     "last_window_vs_offline": ratio})
        json_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
