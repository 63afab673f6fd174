"""The ceiling of learning from shadowed traffic: every train-split request shadowed (no
shortage of records), the learner graded only by the shadowed models' majority answer
(tierline.router.learned.traffic), every method replayed on the held-out slice with the recorded
scores.

    python bench/learning_ceiling.py --data ../shared/data/routing/mmlu-pro/train.jsonl \
        --prices ../shared/data/routing/mmlu-pro/prices.yaml

Prints, for the traffic-trained and the score-trained learner side by side, each live
method's cost (as a share of the best model's) to reach 95% and 99% of the best model's
accuracy on the held-out slice. The learner trains on the models tierline's day-one
default asks (its two cheapest) and the top one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tierline.router.evaluation.dataset import Item, models_of, split_items
from tierline.router.evaluation.methods import evaluate
from tierline.router.learned.traffic import items_from_traffic, traffic_record
from tierline.router.learned.training import train_routing
from tierline.router.strategies.agreement import Agreement
from tierline.training.inputs import read_items, read_prices


def _only(items: list[Item], models: list[str]) -> list[Item]:
    return [Item(it.id, it.prompt, it.grader_kind, it.key, it.meta,
                 {m: it.outcomes[m] for m in models}) for it in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prices", type=Path, required=True)
    parser.add_argument("--split", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prices = read_prices(args.prices)
    items = read_items(args.data)
    models = models_of(items, prices)
    day_one = Agreement(tuple(models), 2)
    learned = [*day_one.asked_first, day_one.target]
    train, test = split_items(items, args.split, args.seed)
    test = _only(test, learned)
    shadowed = items_from_traffic(
        [traffic_record(it.id, it.prompt, day_one.target, {m: it.outcomes[m] for m in learned})
         for it in train], items[0].grader_kind)
    bands = ["mid"] * len(test)
    by_grader = {"the shadowed models' majority": train_routing(shadowed, prices, args.seed),
                 "recorded scores": train_routing(_only(train, learned), prices, args.seed)}
    reports = {name: evaluate(t, test, prices, bands) for name, t in by_grader.items()}
    print(f"{len(train)} train requests (all shadowed), {len(test)} held out; models "
          f"{', '.join(learned)}; best {reports['recorded scores'].best_single}")
    print(f"{'method':22s} " + "  ".join(f"{n[:26]:>26s} 95% / 99%" for n in reports))
    methods = [s.method for s in reports["recorded scores"].summaries if s.kind == "tierline"]
    for method in methods:
        cells = []
        for report in reports.values():
            s = next(x for x in report.summaries if x.method == method)
            cells.append("  ".join("  n/r " if c is None else f"{c:6.1%}"
                                   for c in (s.cost_to_95, s.cost_to_99)))
        print(f"{method:22s} " + "        ".join(f"{c:>30s}" for c in cells))


if __name__ == "__main__":
    main()
