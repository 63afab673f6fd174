"""Routing quality on a subset of a dataset's models, optionally at other prices.

Held-out evaluation brings other models and prices; this writes a recorded-outcome set that
keeps only some models (and a prices file with any overrides) to a temporary directory,
runs ``tierline bench routing`` on it, and removes it. Nothing is copied into the project.

    python bench/model_subset.py --data ../shared/data/routing/mmlu-pro/train.jsonl \\
        --prices ../shared/data/routing/mmlu-pro/prices.yaml \\
        --keep Phi-3-mini-4k-instruct,gemini-1.5-flash-002,gemini-1.5-pro-002 \\
        [--price gemini-1.5-pro-002=0.5/1.5] [-- any other `bench routing` options]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def subset(data: Path, prices: Path, keep: list[str], overrides: list[str],
           out: Path) -> tuple[Path, Path]:
    """Write the kept models' outcomes and prices under ``out``; returns both paths."""
    table = yaml.safe_load(prices.read_text(encoding="utf-8"))["models"]
    missing = [m for m in keep if m not in table]
    if missing:
        sys.exit(f"error: {prices} has no price for {', '.join(missing)}")
    chosen = {m: dict(table[m]) for m in keep}
    for override in overrides:
        model, _, usd = override.partition("=")
        try:
            usd_in, usd_out = (float(x) for x in usd.split("/"))
        except ValueError:
            model = ""
        if model not in chosen:
            sys.exit(f"error: --price {override!r}: give MODEL=IN/OUT for a kept model")
        chosen[model] = {"usd_per_1m_input": usd_in, "usd_per_1m_output": usd_out}
    items = out / "items.jsonl"
    with data.open(encoding="utf-8") as src, items.open("w", encoding="utf-8") as dst:
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            item = json.loads(line)
            absent = [m for m in keep if m not in item["outcomes"]]
            if absent:
                sys.exit(f"error: {data}:{number} has no outcome for {', '.join(absent)}")
            item["outcomes"] = {m: item["outcomes"][m] for m in keep}
            dst.write(json.dumps(item) + "\n")
    priced = out / "prices.yaml"
    priced.write_text(yaml.safe_dump({"models": chosen}), encoding="utf-8")
    return items, priced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="recorded-outcome JSONL")
    parser.add_argument("--prices", type=Path, required=True, help="its prices YAML")
    parser.add_argument("--keep", required=True, help="comma-separated models to keep")
    parser.add_argument("--price", action="append", default=[],
                        help="MODEL=IN/OUT: USD per 1M input/output tokens (repeatable)")
    args, rest = parser.parse_known_args()
    keep = [m.strip() for m in args.keep.split(",") if m.strip()]
    if len(keep) < 2:
        sys.exit("error: --keep needs at least two models to route between")
    with tempfile.TemporaryDirectory(prefix="tierline-subset-") as tmp:
        items, prices = subset(args.data, args.prices, keep, args.price, Path(tmp))
        rest = [a for a in rest if a != "--"]
        sys.exit(subprocess.call([sys.executable, "-m", "tierline", "bench", "routing",
                                  "--train", str(items), "--prices", str(prices), *rest]))


if __name__ == "__main__":
    main()
