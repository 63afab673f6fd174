"""The spine end to end: real Redis, Postgres, simulator and `celery worker` processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.schema import attempts, charges, requests, results
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(stack: dict[str, str], use_broker: Any) -> Client:
    """A producer in this process, on the same broker and database as the workers."""
    settings = Settings(stack["TIERLINE_BROKER_URL"], stack["TIERLINE_DATABASE_URL"], POLICY)
    rt = Runtime(settings, load_policy(POLICY), dict(stack))
    install(rt)
    use_broker(settings.broker_url)
    return Client(rt)


def _workload(n: int) -> list[dict[str, object]]:
    sample = [json.loads(line) for line in (ROOT / "tierline/cli/samples/demo.jsonl").open()]
    lanes = ("realtime", "standard", "batch")
    return [{**sample[i % len(sample)], "id": f"it-{i}", "lane": lanes[i % 3]} for i in range(n)]


def test_500_requests_across_lanes_each_end_with_exactly_one_result(client: Client) -> None:
    report = client.submit_many(_workload(500), job="integration")
    assert (report.accepted, report.duplicates, report.rejected) == (500, 0, 0)
    status = client.wait(report.job_id, timeout_s=120)
    assert status.complete, status
    assert status.by_status == {"done": 500}

    rows = list(client.results(report.job_id))
    assert [r["key"] for r in rows] == [f"it-{i}" for i in range(500)]
    assert all(r["content"] and r["model"] and r["tier"] for r in rows)
    assert {r["lane"] for r in rows} == {"realtime", "standard", "batch"}

    with client.rt.engine.connect() as conn:
        ids = select(requests.c.id).where(requests.c.job_id == report.job_id)
        n_results = conn.execute(select(func.count()).select_from(results)
                                 .where(results.c.request_id.in_(ids))).scalar_one()
        usd_charges = conn.execute(select(func.sum(charges.c.usd))
                                   .where(charges.c.request_id.in_(ids))).scalar_one()
        usd_attempts = conn.execute(select(func.sum(attempts.c.usd))
                                    .where(attempts.c.request_id.in_(ids))).scalar_one()
        usd_results = conn.execute(select(func.sum(results.c.usd))
                                   .where(results.c.request_id.in_(ids))).scalar_one()
        n_charges = conn.execute(select(func.count()).select_from(charges)
                                 .where(charges.c.request_id.in_(ids))).scalar_one()
    assert n_results == 500
    assert n_charges == 500  # the simulator never failed here: one paid attempt each
    assert Decimal(usd_charges) == Decimal(usd_attempts) == Decimal(usd_results) > 0


def test_resubmitting_the_same_keys_duplicates_no_work(client: Client) -> None:
    first = client.submit_many(_workload(30), job="first")
    client.wait(first.job_id, timeout_s=60)
    again = client.submit_many(_workload(30), job="again")
    assert (again.accepted, again.duplicates) == (0, 30)
    assert again.request_ids == first.request_ids  # the earlier requests' ids, in order
    with client.rt.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(requests)
                             .where(requests.c.idempotency_key.like("it-%"))).scalar_one()
    assert total == 500  # the first test's 500 keys: nothing new was stored


def _run_and_acknowledged(broker_url: str, queues: list[str], timeout_s: float = 30.0) -> None:
    """Until ``queues`` hold no message and none is unacknowledged (a task acknowledges its
    message when it ends), twice in a row: a message is briefly in neither place as a worker
    takes it. Only these queues: other tests leave backlogs of their own (under a prefix)."""
    import redis

    broker = redis.Redis.from_url(broker_url)
    empty_in_a_row, deadline = 0, time.monotonic() + timeout_s
    while empty_in_a_row < 2 and time.monotonic() < deadline:
        busy = broker.hlen("unacked") or any(broker.llen(queue) for queue in queues)
        empty_in_a_row = 0 if busy else empty_in_a_row + 1
        time.sleep(0.1)
    assert empty_in_a_row == 2, "the bundles sent again were never run"


def test_a_redelivered_bundle_charges_nothing_twice(client: Client) -> None:
    from tierline.workers.tasks import call_models

    report = client.submit_many(
        [{"prompt": f"redelivery {i}", "lane": "batch", "id": f"re-{i}"} for i in range(10)])
    client.wait(report.job_id, timeout_s=60)
    with client.rt.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(charges)).scalar_one()
    tiers = {r["tier"] for r in client.results(report.job_id)}
    queues = [f"tier.{tier}.batch" for tier in tiers]
    sent = [call_models.apply_async(args=[report.request_ids], queue=queue) for queue in queues]
    _run_and_acknowledged(client.rt.settings.broker_url, queues)
    with client.rt.engine.connect() as conn:
        after = conn.execute(select(func.count()).select_from(charges)).scalar_one()
    assert sent and after == before


def test_requests_accepted_during_a_broker_outage_are_kept_and_swept(
        stack: dict[str, str], tmp_path: Path) -> None:
    lines = tmp_path / "outage.jsonl"
    lines.write_text("".join(json.dumps({"prompt": f"outage {i}", "lane": "standard"}) + "\n"
                             for i in range(20)))
    down = {**stack, "TIERLINE_BROKER_URL": "redis://127.0.0.1:1/0"}
    submitted = subprocess.run([sys.executable, "-m", "tierline", "submit", str(lines)],
                               cwd=ROOT, env=down, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    assert "20 accepted" in submitted.stdout
    assert "could not be enqueued" in submitted.stderr
    job = re.search(r"job (\S+):", submitted.stdout).group(1)  # type: ignore[union-attr]

    swept = subprocess.run([sys.executable, "-m", "tierline", "sweep"], cwd=ROOT, env=stack,
                           capture_output=True, text=True, timeout=60)
    assert "20 stranded requests enqueued" in swept.stdout, swept.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = subprocess.run([sys.executable, "-m", "tierline", "status", job], cwd=ROOT,
                                env=stack, capture_output=True, text=True, timeout=60)
        if "completed" in status.stdout:
            break
        time.sleep(0.5)
    assert "20 done" in status.stdout, status.stdout + status.stderr


def test_the_ledger_rolls_up_by_day_and_model_and_reconciles(stack: dict[str, str],
                                                              client: Client) -> None:
    def charges_cli(*args: str) -> str:
        run = subprocess.run([sys.executable, "-m", "tierline", "charges", *args], cwd=ROOT,
                             env=stack, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout

    rows = json.loads(charges_cli("--by", "day", "--by", "model", "--format", "json"))
    assert rows and all({"day", "model", "calls", "usd"} <= set(r) for r in rows)
    with client.rt.engine.connect() as conn:
        ledger = conn.execute(select(func.sum(charges.c.usd))).scalar_one()
        calls = conn.execute(select(func.count()).select_from(charges)).scalar_one()
    assert sum(Decimal(r["usd"]) for r in rows) == Decimal(ledger)
    assert sum(r["calls"] for r in rows) == calls
    assert "balanced" in charges_cli("--by", "lane") and "NOT" not in charges_cli("--by", "lane")
    assert charges_cli("--since", "2999-01-01", "--format", "csv").strip() == \
        "model,calls,tokens_in,tokens_out,estimated,usd"
    bad = subprocess.run([sys.executable, "-m", "tierline", "charges", "--since", "yesterday"],
                         cwd=ROOT, env=stack, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--since: 'yesterday' is not an ISO date" in bad.stderr
