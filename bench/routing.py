"""Learned-router classification throughput: prompts per second, one core, batch mode.

    python bench/routing.py [--data ../shared/data] [--batch 4096] [--repeats 5]

Trains the learned router on MMLU-Pro's recorded outcomes (70%), then times hashing plus
one sparse-dense product per batch on the rest; reports the best and median of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from tierline.router.learned.features import HashingConfig, hash_texts  # noqa: E402
from tierline.router.learned.router import train_learned_router  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    default_data = Path(os.environ.get("TIERLINE_DATA", root / ".." / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.data / "routing/mmlu-pro/train.jsonl").open()]
    models = list(rows[0]["outcomes"])
    prompts = [r["prompt"] for r in rows]
    scores = np.array([[r["outcomes"][m]["score"] for m in models] for r in rows])
    cut = int(len(rows) * 0.7)
    started = time.perf_counter()
    router = train_learned_router(prompts[:cut], scores[:cut], models, {}, HashingConfig())
    train_s = time.perf_counter() - started
    test = (prompts[cut:] * (args.batch // max(len(prompts) - cut, 1) + 1))[: args.batch]
    router.predict(test[:64])
    rates, hash_rates = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        hashed = hash_texts(test, router.config)
        t1 = time.perf_counter()
        router.logits_rows(hashed)
        t2 = time.perf_counter()
        rates.append(len(test) / (t2 - t0))
        hash_rates.append(len(test) / (t1 - t0))
    chars = sum(map(len, test)) / len(test)
    print(f"trained on {cut} prompts x {len(models)} models in {train_s:.1f}s")
    print(f"batch {len(test)} prompts ({chars:.0f} chars each), {args.repeats} repeats, one core")
    print(f"classify (hash + predict): best {max(rates):,.0f} prompts/s, "
          f"median {statistics.median(rates):,.0f}")
    print(f"hash only: best {max(hash_rates):,.0f} prompts/s")


if __name__ == "__main__":
    main()
