"""A worker killed with SIGKILL mid-call: its bundle is redelivered and answered once; the
calls it made are in the ledger as of unknown outcome, at their reserved estimate (the
provider may have billed them), and nothing is charged twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from tierline.bench.children import sim_url, spawn, stop
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, charges, requests
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
pytestmark = pytest.mark.integration


def test_a_bundle_whose_worker_is_killed_mid_call_is_redelivered_and_its_calls_accounted_for(
        redis_url: str, postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    # this test's own queues and workers, on a db of its own (another when 4 is someone else's)
    broker = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("TIERLINE_TEST_CRASH_REDIS_DB", "4")
    redis.Redis.from_url(broker).flushdb()
    slow = tmp_path / "slow.yaml"
    slow.write_text("default: {ttft_s: 2.0, per_token_s: 0, jitter_s: 0, cold_start_s: 0}\n")
    sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--config",
                 str(slow),
                 "--port", "0"], dict(os.environ), tmp_path / "sim.log", cwd=ROOT)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        url = sim_url(tmp_path / "sim.log", sim)
        env = {**os.environ, "TIERLINE_BROKER_URL": broker, "TIERLINE_DATABASE_URL": postgres_url,
               "TIERLINE_POLICY": str(POLICY), "TIERLINE_SIM_URL": url,
               "TIERLINE_VISIBILITY_TIMEOUT_S": "8"}  # calls may take 4 s
        worker = [sys.executable, "-m", "tierline", "worker", "--role", "all", "-c", "2", "--",
                  "--without-mingle", "--without-gossip"]
        workers.append(spawn([*worker, "-n", "doomed@%h"], env, tmp_path / "doomed.log", cwd=ROOT))

        rt = Runtime(Settings(broker, postgres_url, POLICY, visibility_s=8.0), load_policy(POLICY),
                     env)
        install(rt)
        use_broker(broker)
        report = Client(rt).submit_many([f"crash test {i}" for i in range(6)], lane="batch")

        def calls_seen() -> int:
            stats = httpx.get(f"{url}/sim/stats", timeout=5).json()
            return sum(model["calls"] for model in stats.values())

        deadline = time.monotonic() + 30
        while calls_seen() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert calls_seen() > 0, "the doomed worker never called a model"
        stop(workers[0], signal.SIGKILL)  # mid-call: the simulator takes 2 s to answer
        with rt.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(charges).where(
                charges.c.job_id == report.job_id)).scalar_one() == 0

        workers.append(spawn([*worker, "-n", "survivor@%h"], env, tmp_path / "survivor.log",
                             cwd=ROOT))
        status = Client(rt).wait(report.job_id, timeout_s=90)
        assert (status.state, status.by_status) == ("completed", {"done": 6}), status
        ids = select(requests.c.id).where(requests.c.job_id == report.job_id)
        with rt.engine.connect() as conn:
            n_charges = conn.execute(select(func.count()).select_from(charges)
                                     .where(charges.c.request_id.in_(ids))).scalar_one()
            tried = conn.execute(select(attempts.c.ok, attempts.c.error, attempts.c.seq)
                                 .where(attempts.c.request_id.in_(ids))).all()
            assert reconcile(conn).balanced
        # the doomed worker's calls (written ahead, never recorded), then the survivor's
        unknown = [t for t in tried if not t.ok]
        assert unknown and all(t.error.startswith("Unknown: ") for t in unknown)
        assert len([t for t in tried if t.ok]) == 6
        assert n_charges == len(tried)
    finally:
        for proc in workers:
            stop(proc)
        stop(sim)
        redis.Redis.from_url(broker).flushdb()
