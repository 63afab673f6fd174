"""On Postgres a producer's wait wakes when its job's results commit, not at its next poll."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tierline.config.settings import Settings
from tierline.producer.client import Client, time_ordered_id
from tierline.record import jobs as jobs_
from tierline.record import records
from tierline.record.schema import jobs
from tierline.router.envelope import build_request
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
POLL_S = 5.0  # polling alone would answer up to this long after the commit
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(stack: dict[str, str], use_broker: Any) -> Iterator[Client]:
    """A producer in this process, on the same broker and database as the worker processes."""
    from tierline.workers.app import app

    settings = Settings(stack["TIERLINE_BROKER_URL"], stack["TIERLINE_DATABASE_URL"], POLICY)
    rt = Runtime(settings, load_policy(POLICY), dict(stack))
    saved_rt, saved_broker = install(rt), str(app.conf.broker_url)
    use_broker(settings.broker_url)
    try:
        yield Client(rt)
    finally:  # an embedded stack in a later module must not publish through our pool
        use_broker(saved_broker)
        install(saved_rt)


def _finished_at(client: Client, job_id: str) -> float:
    with client.rt.engine.connect() as conn:
        return float(conn.execute(select(jobs.c.finished_at)
                                  .where(jobs.c.id == job_id)).scalar_one())


def test_a_wait_returns_as_soon_as_the_workers_commit_the_answer(client: Client) -> None:
    client.wait(client.submit_many(["warm the workers up"], lane="realtime").job_id,
                timeout_s=60)
    for i in range(3):
        job_id = client.submit_many([f"What is {i} + 2?"], lane="realtime").job_id
        started = time.time()
        status = client.wait(job_id, timeout_s=30, poll_s=POLL_S, max_poll_s=POLL_S)
        returned = time.time()
        assert status.complete and status.by_status == {"done": 1}, status
        finished = _finished_at(client, job_id)
        assert finished - started < POLL_S - 1  # else polling could have seen it as soon
        assert returned - finished < 0.5, (started, finished, returned)


def test_a_cancel_wakes_the_jobs_waiter(client: Client) -> None:
    """A job whose requests were never enqueued: only the cancel can end it."""
    now = time.time()
    job_id = str(uuid.uuid4())
    request = build_request({"prompt": "wait for me"}, client.rt.policy, now_s=now,
                            new_id=time_ordered_id(), lane="batch")
    with client.rt.engine.begin() as conn:
        records.create_job(conn, job_id, name=None, tenant="default", lane="batch", now_s=now)
        records.accept_requests(conn, job_id, [(1, request)])
        jobs_.set_state(conn, job_id, "in_progress", now_s=now)
    canceller = threading.Timer(0.5, client.cancel, args=[job_id])
    canceller.start()
    started = time.monotonic()
    try:
        status = client.wait(job_id, timeout_s=30, poll_s=POLL_S, max_poll_s=POLL_S)
    finally:
        canceller.join()
    assert status.state == "cancelled" and status.by_status == {"cancelled": 1}
    assert time.monotonic() - started < 1.5
