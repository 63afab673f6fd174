"""The ceiling of accepting the cheapest model's answer without training: what a perfect
judge, blind acceptance and the free self-checks
(tierline.router.strategies.agreement.passes_checks) reach
against the best model, and how precise a rule must be for 99% of its accuracy at a
given cost.

    PYTHONPATH=. python bench/cheap_answer_ceiling.py \
        --data ../shared/data/routing/gsm8k-2tier/all.jsonl \
        --prices ../shared/data/routing/gsm8k-2tier/prices.yaml

Every rule here asks the cheapest model first and, when it does not accept that answer,
the best model (by recorded accuracy); costs and accuracies are shares of the best
model's alone over the whole file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tierline.bench.routing import read_items, read_prices
from tierline.router.evaluation.dataset import call_usd, models_of
from tierline.router.learned.answers import EXTRACTOR_FOR_GRADER, EXTRACTORS
from tierline.router.strategies.agreement import passes_checks
from tierline.router.strategies.steps import Attempt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prices", type=Path, required=True)
    parser.add_argument("--accuracy", type=float, default=0.99,
                        help="the share of the best model's accuracy asked for")
    parser.add_argument("--cost", type=float, default=0.85,
                        help="the share of the best model's cost allowed")
    args = parser.parse_args()
    prices, items = read_prices(args.prices), read_items(args.data)
    models = models_of(items, prices)  # cheapest first
    score = {m: np.array([it.outcomes[m].score for it in items]) for m in models}
    usd = {m: np.array([call_usd(it.outcomes[m], prices[m]) for it in items]) for m in models}
    cheap, best = models[0], max(models, key=lambda m: score[m].mean())
    acc_best, usd_best = score[best].mean(), usd[best].sum()

    def row(name: str, accept: np.ndarray) -> None:
        acc = np.where(accept, score[cheap], score[best]).mean()
        cost = (usd[cheap] + (~accept) * usd[best]).sum() / usd_best
        there = (f"; cheap right {score[cheap][accept].mean():.1%} vs best "
                 f"{score[best][accept].mean():.1%} there" if accept.any() else "")
        print(f"{name:34s} accepts {accept.mean():6.1%}: {acc / acc_best:6.1%} of the best "
              f"model's accuracy at {cost:6.1%} of its cost{there}")

    print(f"{len(items)} requests; cheapest {cheap} ({score[cheap].mean():.1%} right, "
          f"{usd[cheap].sum() / usd_best:.1%} of the best's cost); best {best} "
          f"({acc_best:.1%})")
    row("perfect judge (cheap right)", score[cheap] > 0)
    extract = EXTRACTORS[EXTRACTOR_FOR_GRADER[items[0].grader_kind]]
    for strict in (False, True):
        row(f"free checks{' (strict)' if strict else ''}", np.array([passes_checks(
            it.prompt, Attempt(cheap, it.outcomes[cheap].response,
                               extract(it.outcomes[cheap].response)), strict)
            for it in items]))
    rng = np.random.default_rng(0)
    for share in (0.05, 0.2, 0.4):
        row(f"blind: {share:.0%} accepted at random", rng.random(len(items)) < share)
    least = usd[cheap].sum() / usd_best + 1 - args.cost  # accepted share that costs args.cost
    needed = acc_best - (1 - args.accuracy) * acc_best / least
    print(f"for {args.accuracy:.0%} of the best's accuracy at under {args.cost:.0%} of its cost, "
          f"a rule must accept at least {least:.1%} of the cheap answers, and those must be "
          f"right at least {needed:.1%} of the time (where the best is right {acc_best:.1%}, "
          f"as on average)")


if __name__ == "__main__":
    main()
