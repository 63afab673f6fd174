"""Postgres refusing every connection for a while, mid-bundle: the tier worker's write is
retried, then the task itself, and every request still ends answered, with nobody typing a
command; the calls whose outcome could not be written stay in the ledger (written ahead, at
their estimate), and the ledger balances."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import func, select

from tierline.bench.children import sim_url, spawn, stop
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, charges, results
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
OUTAGE_S = 8.0  # longer than the worker's own write retries (0.2 x the 20 s lease)
pytestmark = pytest.mark.integration


def _refuse_connections(admin_url: str, database: str, refuse: bool) -> None:
    """Make ``database`` refuse new connections and drop the open ones, or let them in."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))


def test_a_database_outage_mid_bundle_loses_nothing_and_charges_once(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    redis.Redis.from_url(own_broker).flushdb()
    admin_url, database = own_postgres_url.rsplit("/", 1)
    admin_url += "/postgres"
    slow = tmp_path / "slow.yaml"
    slow.write_text("default: {ttft_s: 2.0, per_token_s: 0, jitter_s: 0, cold_start_s: 0, "
                    "error_rate: 0}\n")
    sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--config",
                 str(slow),
                 "--port", "0"], dict(os.environ), tmp_path / "sim.log", cwd=ROOT)
    worker = None
    try:
        url = sim_url(tmp_path / "sim.log", sim)
        env = {**os.environ, "TIERLINE_BROKER_URL": own_broker,
               "TIERLINE_DATABASE_URL": own_postgres_url, "TIERLINE_POLICY": str(POLICY),
               "TIERLINE_SIM_URL": url, "TIERLINE_VISIBILITY_TIMEOUT_S": "20"}
        worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "all", "-c", "2",
                        "--", "--without-mingle", "--without-gossip", "-n", "outage@%h"],
                       env, tmp_path / "worker.log", cwd=ROOT)
        rt = Runtime(Settings(own_broker, own_postgres_url, POLICY, visibility_s=20.0),
                     load_policy(POLICY), env)
        install(rt)
        use_broker(own_broker)
        report = Client(rt).submit_many([f"outage test {i}" for i in range(6)], lane="batch")

        def calls_seen() -> int:
            stats = httpx.get(f"{url}/sim/stats", timeout=5).json()
            return sum(model["calls"] for model in stats.values())

        deadline = time.monotonic() + 30
        while calls_seen() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert calls_seen() > 0, "the worker never called a model"
        _refuse_connections(admin_url, database, refuse=True)  # mid-call: answers take 2 s
        try:
            time.sleep(OUTAGE_S)
        finally:
            _refuse_connections(admin_url, database, refuse=False)
        rt.engine.dispose()

        deadline = time.monotonic() + 40
        ended = 0
        while time.monotonic() < deadline:
            with rt.engine.connect() as conn:
                ended = conn.execute(select(func.count()).select_from(results)).scalar_one()
            if ended == 6:
                break
            time.sleep(0.5)
        with rt.engine.connect() as conn:
            statuses = conn.execute(select(results.c.status)).scalars().all()
            n_charges = conn.execute(select(func.count()).select_from(charges)).scalar_one()
            n_attempts = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
            assert reconcile(conn).balanced
        assert statuses == ["ok"] * 6, (tmp_path / "worker.log").read_text()[-3000:]
        assert n_charges == n_attempts
        assert Client(rt).status(report.job_id).state == "completed"
        log = (tmp_path / "worker.log").read_text()
        assert "retried in" in log or "again in" in log  # the fault was met, and survived
    finally:
        if worker is not None:
            stop(worker)
        stop(sim)
        redis.Redis.from_url(own_broker).flushdb()
