"""The spine end to end: real Redis, Postgres, simulator and `celery worker` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from router.policy import load_policy
from tierline.client import Client
from workers.app import app
from workers.runtime import Runtime, install
from workers.schema import attempts, charges, requests, results
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
pytestmark = pytest.mark.integration


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def stack(redis_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, str]]:
    """The simulator, one router worker and one tier worker, as separate processes."""
    logs = tmp_path_factory.mktemp("logs")
    sim = _spawn([sys.executable, "-m", "sim", "--policy", str(POLICY), "--port", "0"],
                 dict(os.environ), logs / "sim.log")
    match = None
    deadline = time.monotonic() + 20
    while match is None and time.monotonic() < deadline and sim.poll() is None:
        time.sleep(0.05)
        match = re.search(r"listening on (http://\S+)", (logs / "sim.log").read_text())
    assert match, f"simulator did not start: {(logs / 'sim.log').read_text()!r}"
    env = {**os.environ, "TIERLINE_BROKER_URL": redis_url, "TIERLINE_DATABASE_URL": postgres_url,
           "TIERLINE_POLICY": str(POLICY), "TIERLINE_SIM_URL": match.group(1)}
    tierline = [sys.executable, "-m", "tierline", "worker"]
    workers = [
        _spawn([*tierline, "--role", "router", "-c", "2", "--", "--without-mingle",
                "--without-gossip", "-n", "router@%h"], env, logs / "router.log"),
        _spawn([*tierline, "--role", "tier", "-c", "4", "--", "--without-mingle",
                "--without-gossip", "-n", "tier@%h"], env, logs / "tier.log"),
    ]
    try:
        yield env
    finally:
        for proc in workers:
            _stop(proc)
        _stop(sim)
        for log in logs.iterdir():
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name}\n{text[-4000:]}")


@pytest.fixture(scope="module")
def client(stack: dict[str, str]) -> Client:
    """A producer in this process, on the same broker and database as the workers."""
    settings = Settings(stack["TIERLINE_BROKER_URL"], stack["TIERLINE_DATABASE_URL"], POLICY)
    rt = Runtime(settings, load_policy(POLICY), dict(stack))
    install(rt)
    app.conf.broker_url = settings.broker_url
    return Client(rt)


def _workload(n: int) -> list[dict[str, object]]:
    sample = [json.loads(line) for line in (ROOT / "tierline/samples/demo.jsonl").open()]
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


def test_a_redelivered_bundle_charges_nothing_twice(client: Client) -> None:
    from workers.tasks import call_models

    report = client.submit_many(
        [{"prompt": f"redelivery {i}", "lane": "batch", "id": f"re-{i}"} for i in range(10)])
    client.wait(report.job_id, timeout_s=60)
    with client.rt.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(charges)).scalar_one()
    tiers = {r["tier"] for r in client.results(report.job_id)}
    sent = [call_models.apply_async(args=[report.request_ids], queue=f"tier.{tier}.batch")
            for tier in tiers]
    time.sleep(2.0)  # the tier worker takes these within milliseconds; give it ample time
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
