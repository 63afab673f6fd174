"""`tierline bench routing --live`: the pipeline reproduces the offline replay exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import data_dir

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_a_live_cascade_matches_its_offline_replay(redis_url: str, postgres_url: str) -> None:
    data = data_dir() / "routing" / "gsm8k-2tier"
    if not (data / "all.jsonl").exists():
        pytest.skip(f"no data at {data}")
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(broker).flushdb()
    env = {**os.environ, "TIERLINE_BROKER_URL": broker, "TIERLINE_DATABASE_URL": postgres_url}
    run = subprocess.run(
        [sys.executable, "-m", "tierline", "bench", "routing", "--train",
         str(data / "all.jsonl"), "--prices", str(data / "prices.yaml"), "--split", "0.3",
         "--live", "--live-limit", "60", "--live-point", "cascade-2 bar=0.804"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    redis.Redis.from_url(broker).flushdb()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.strip().startswith("│")]
    offline = [cell.strip() for cell in lines[0].split("│")[2:4]]
    live = [cell.strip() for cell in lines[1].split("│")[2:4]]
    assert offline == live and float(offline[0]) > 0.5
    assert "match" in run.stdout
