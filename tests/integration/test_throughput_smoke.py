"""Bundled throughput end to end, small: 2,000 requests through real router and tier workers
on the instant policy (no HTTP, no model); every one completes and the ledger adds up."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from tests.integration.conftest import stop_together
from tierline.bench.children import spawn
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.schema import attempts, charges, requests, results
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "bench-instant.yaml"
ROWS = 2_000
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instant_client(redis_url: str, postgres_url: str, use_broker: Any,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Router and tier workers on the instant policy, on a broker database of their own (the
    demo stack's workers serve the same queue names), and a producer in this process."""
    broker = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("TIERLINE_TEST_SMOKE_REDIS_DB", "3")
    redis.Redis.from_url(broker).flushdb()
    logs = tmp_path_factory.mktemp("smoke-logs")
    env = {**os.environ, "TIERLINE_BROKER_URL": broker, "TIERLINE_DATABASE_URL": postgres_url,
           "TIERLINE_POLICY": str(POLICY)}
    quiet = ["--", "--without-mingle", "--without-gossip", "-l", "WARNING"]
    worker = [sys.executable, "-m", "tierline", "worker"]
    procs = [spawn([*worker, "--role", "router", "-c", "1", *quiet, "-n", "smoke-router@%h"],
                   env, logs / "router.log", cwd=ROOT),
             spawn([*worker, "--role", "tier", "-c", "2", *quiet, "-n", "smoke-tier@%h"],
                   env, logs / "tier.log", cwd=ROOT)]
    settings = Settings(broker, postgres_url, POLICY)
    use_broker(broker)
    try:
        yield Client(Runtime(settings, load_policy(POLICY), dict(env)))
    finally:
        stop_together(procs)
        use_broker(redis_url)  # the demo stack's tests may run after this module


def test_2000_bundled_requests_all_complete_and_charges_add_up(instant_client: Client) -> None:
    texts = ({"id": f"smoke-{i}", "prompt": f"Classify.\nLabels: billing, shipping, returns\n"
              f"Text:\nmy parcel {i} never came, refund the shipping\nLabel:"}
             for i in range(ROWS))
    report = instant_client.submit_many(texts, lane="batch", job="smoke", collect_ids=False)
    assert report.accepted == ROWS
    status = instant_client.wait(report.job_id, timeout_s=120, poll_s=0.5)
    assert status.state == "completed" and status.by_status == {"done": ROWS}, status
    ids = select(requests.c.id).where(requests.c.job_id == report.job_id)
    with instant_client.rt.engine.connect() as conn:
        n_results, usd_results = conn.execute(select(func.count(), func.sum(results.c.usd))
                                              .where(results.c.request_id.in_(ids))).one()
        n_charges, usd_charges = conn.execute(select(func.count(), func.sum(charges.c.usd))
                                              .where(charges.c.job_id == report.job_id)).one()
        usd_attempts = conn.execute(select(func.sum(attempts.c.usd))
                                    .where(attempts.c.request_id.in_(ids))).scalar_one()
        labels = set(conn.execute(select(results.c.content).where(results.c.request_id.in_(ids)))
                     .scalars())
    assert n_results == n_charges == ROWS  # one paid attempt each: the instant model never fails
    assert Decimal(usd_charges) == Decimal(usd_attempts) == Decimal(usd_results) > 0
    assert labels <= {"billing", "shipping", "returns"}
