"""`tierline bench routing --live`: the pipeline reproduces the offline replay exactly, for
every strategy kind that runs live (single, cascade, value, parallel by judge and by vote,
hybrid)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import data_dir, require_service

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("dataset", "rows", "point"), [
    ("gsm8k-2tier/all.jsonl", None, "untrained cheapest alone"),  # single: the worker's own loop
    ("gsm8k-2tier/all.jsonl", None, "cascade-2 bar=0.804"),
    ("gsm8k-2tier/all.jsonl", None, "value-2 δ=0.0534"),
    ("gsm8k-2tier/all.jsonl", None, "parallel top-2 judge"),
    ("gsm8k-2tier/all.jsonl", None, "parallel top-2 vote"),  # the one vote rule, both runs
    ("mmlu-pro/train.jsonl", 1500, "hybrid bar=0.501"),  # a verifier needs a third model
])
def test_a_live_point_matches_its_offline_replay(redis_url: str, postgres_url: str,
                                                 tmp_path: Path, dataset: str, rows: int | None,
                                                 point: str) -> None:
    source = data_dir() / "routing" / dataset
    require_service("the shared data", source.exists(), f"no data at {source}")
    train = source
    if rows is not None:  # a slice keeps training to seconds
        train = tmp_path / "train.jsonl"
        with source.open(encoding="utf-8") as lines:
            train.write_text("".join(line for _, line in zip(range(rows), lines, strict=False)))
    # a db of its own (another when 7 is someone else's)
    broker = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("TIERLINE_TEST_BENCH_REDIS_DB", "7")
    redis.Redis.from_url(broker).flushdb()
    env = {**os.environ, "TIERLINE_BROKER_URL": broker, "TIERLINE_DATABASE_URL": postgres_url}
    run = subprocess.run(
        [sys.executable, "-m", "tierline", "bench", "routing", "--train", str(train),
         "--prices", str(source.parent / "prices.yaml"), "--split", "0.3",
         "--live", "--live-limit", "40", "--live-point", point],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    redis.Redis.from_url(broker).flushdb()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.strip().startswith("│")]
    offline = [cell.strip() for cell in lines[0].split("│")[2:4]]
    live = [cell.strip() for cell in lines[1].split("│")[2:4]]
    assert offline[0] == live[0] and float(offline[0]) > 0.3  # the same answers graded
    # the same spend, to the table's last printed digit (the single loop rounds each charge
    # to the ledger's 10 decimals, the replay does not)
    assert abs(float(offline[1]) - float(live[1])) <= 1.01e-8
    assert "match" in run.stdout
