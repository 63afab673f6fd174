"""The sweeper ends a job whose intake was interrupted, on real Postgres: ``failed``, with an
error that says what to do, and its written requests ended so the counts add up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import broker_down
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record import jobs
from tierline.record.schema import results
from tierline.router.policy import load_policy
from tierline.schedules.sweeper import (
    INTAKE_STALLED_AFTER_S,
    enqueue_stranded,
    fail_stalled_intakes,
)
from tierline.workers.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"  # ingress_chunk 64: intake commits every 64 rows
# a Redis db nobody consumes, for the sweep command's publishes
SWEEP_BROKER = "redis://127.0.0.1:6379/" + os.environ.get("TIERLINE_TEST_SWEEP_REDIS_DB", "8")


class Crash(Exception):
    """The producer dies in the middle of its input."""


@pytest.fixture()
def client(own_postgres_url: str) -> Client:
    rt = Runtime(Settings("memory://", own_postgres_url, POLICY), load_policy(POLICY))
    return Client(rt, publish=broker_down)  # requests stay accepted, never enqueued


def _crashing(rows: int) -> Iterator[str]:
    for i in range(rows):
        yield f"question {i}"
    raise Crash


def _interrupted(client: Client, rows: int = 150) -> str:
    """Submit a job whose producer dies after ``rows`` rows; return its id."""
    with pytest.raises(Crash):
        client.submit_many(_crashing(rows), lane="batch", job="nightly@2026-11-28")
    [job] = [j for j, _ in _validating(client)]
    return job


def _validating(client: Client) -> list[tuple[str, int]]:
    with client.rt.engine.connect() as conn:
        return jobs.stalled_intakes(conn, quiet_since=time.time() + 1)


def test_an_interrupted_intake_ends_failed_once_it_has_been_quiet_for_the_timeout(
        client: Client) -> None:
    job = _interrupted(client)
    assert client.status(job).state == "validating"
    # two chunks of 64 were committed before the crash; the last 22 rows were lost with it
    assert _validating(client) == [(job, 128)]

    soon = time.time() + INTAKE_STALLED_AFTER_S / 2
    assert fail_stalled_intakes(client.rt, now_s=soon) == []
    assert client.status(job).state == "validating"

    later = time.time() + INTAKE_STALLED_AFTER_S + 1
    assert fail_stalled_intakes(client.rt, now_s=later) == [job]
    status = client.status(job)
    assert status.state == "failed" and status.by_status == {"failed": 128}
    assert status.error is not None and status.error.startswith(
        "intake interrupted: 128 requests were written, none in the last 900 s")
    assert "Submit it again as a new job" in status.error
    assert client.resume(job) == 0  # what the error says: resume has nothing to enqueue
    with client.rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.status, results.c.error)).all()
    assert {tuple(r) for r in ended} == {("failed", "job failed")} and len(ended) == 128
    assert fail_stalled_intakes(client.rt, now_s=later + 1) == []  # once only


def test_a_job_that_crashed_before_its_first_chunk_fails_too(client: Client) -> None:
    job = _interrupted(client, rows=10)  # fewer than a chunk: nothing was written
    assert _validating(client) == [(job, 0)]
    assert fail_stalled_intakes(client.rt, now_s=time.time() + INTAKE_STALLED_AFTER_S + 1) \
        == [job]
    status = client.status(job)
    assert status.state == "failed" and status.total == 0
    assert status.error is not None and status.error.startswith("intake interrupted: 0 requests")


def test_finished_intakes_are_left_alone_and_a_late_finish_does_not_reopen_a_failed_job(
        client: Client) -> None:
    done = client.submit_many([f"q {i}" for i in range(70)], lane="batch").job_id
    job = _interrupted(client)
    assert fail_stalled_intakes(client.rt, now_s=time.time() + INTAKE_STALLED_AFTER_S + 1) \
        == [job]
    assert client.status(done).state == "in_progress"
    with client.rt.engine.begin() as conn:  # the stalled producer wakes up and finishes
        jobs.set_state(conn, job, "in_progress", now_s=time.time())
        assert not jobs.fail_intake(conn, done, time.time(), "not validating")
    assert client.status(job).state == "failed"
    assert client.status(done).state == "in_progress"


def test_the_sweep_that_tierline_sweep_and_beat_run_fails_the_job_before_enqueueing(
        client: Client) -> None:
    job = _interrupted(client)
    # Its requests were never enqueued (no broker here): without the failure first, the
    # sweep would publish all 128 of them for nothing.
    assert enqueue_stranded(client.rt, min_age_s=0.0, stalled_after_s=0.0) == 0
    assert client.status(job).state == "failed"


def test_the_sweep_command_names_the_jobs_it_failed(client: Client, own_postgres_url: str,
                                                     tmp_path: Path) -> None:
    job = _interrupted(client)
    env = {**os.environ, "TIERLINE_DATABASE_URL": own_postgres_url, "TIERLINE_POLICY": str(POLICY),
           "TIERLINE_BROKER_URL": SWEEP_BROKER}
    run = subprocess.run([sys.executable, "-m", "tierline", "sweep", "--intake-timeout", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"job {job} failed: its intake was interrupted; submit it again" in run.stdout
    assert "0 stranded requests enqueued" in run.stdout  # its requests ended with the job
    assert client.status(job).state == "failed"


def test_the_sweep_command_names_the_batch_intakes_it_hands_over_again(
        client: Client, own_postgres_url: str, tmp_path: Path) -> None:
    from tierline.producer.batches import Batches
    from tierline.producer.files import Upload

    class BrokerDown(Batches):  # the batch is created while its intake cannot be handed over
        def _publish(self, job_id: str) -> bool:
            return False

    line = (b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"messages": [{"role": "user", "content": "hi"}]}}\n')
    uploaded = Batches(client).files.upload("default", Upload("batch", "u.jsonl", line))
    created = BrokerDown(client).create("default", {
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    env = {**os.environ, "TIERLINE_DATABASE_URL": own_postgres_url, "TIERLINE_POLICY": str(POLICY),
           "TIERLINE_BROKER_URL": SWEEP_BROKER}
    run = subprocess.run([sys.executable, "-m", "tierline", "sweep"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"batch {created['id']}: its file is being read again" in run.stdout
    assert client.status(created["id"].removeprefix("batch_")).state == "validating"
