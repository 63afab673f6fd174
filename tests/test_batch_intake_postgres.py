"""A batch's intake on real Postgres: the batch is written before its file is read, a second
read after a crash writes each line once and counts the job whole, the sweeper restarts a
batch's intake rather than failing it, and a file is not deleted while a batch reads it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tierline.config.settings import Settings
from tierline.producer.batch_intake import ingest
from tierline.producer.batches import Batches
from tierline.producer.client import Client
from tierline.producer.files import Upload
from tierline.producer.openai_shapes import HttpError
from tierline.record import jobs
from tierline.record.schema import batches, requests
from tierline.record.schema import jobs as jobs_table
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime

POLICY = Path(__file__).resolve().parents[1] / "policies" / "demo.yaml"  # chunks of 64


class Crash(Exception):
    """The intake's worker dies in the middle of the file."""


class _NoWorker:
    """No broker or worker here: requests are written and left for them; the intake dies
    when it publishes chunk ``crash_at_chunk``."""

    def __init__(self) -> None:
        self.crash_at_chunk: int | None = None
        self.chunks = 0

    def __call__(self, lane: str, request_ids: list[str], *, retry: bool) -> None:
        self.chunks += 1
        if self.chunks == self.crash_at_chunk:
            raise Crash


class _Unpublished(Batches):
    """Batches whose intake is run here, by hand, instead of by a worker."""

    def _publish(self, job_id: str) -> bool:
        return False


@pytest.fixture()
def no_worker() -> _NoWorker:
    return _NoWorker()


@pytest.fixture()
def client(own_postgres_url: str, no_worker: _NoWorker) -> Client:
    return Client(Runtime(Settings("memory://", own_postgres_url, POLICY), load_policy(POLICY)),
                  publish=no_worker)


def _line(custom_id: str) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"messages": [{"role": "user", "content": custom_id}]}}).encode()


def _create(client: Client, content: bytes) -> tuple[str, str]:
    """A new batch of ``content``: (its job id, its input file id)."""
    made = _Unpublished(client)
    file_id = made.files.upload("acme", Upload("batch", "in.jsonl", content))["id"]
    batch = made.create("acme", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                 "completion_window": "24h"})
    return str(batch["id"]).removeprefix("batch_"), file_id


def test_a_second_read_after_a_crash_writes_each_line_once_and_counts_the_job_whole(
        client: Client, no_worker: _NoWorker) -> None:
    content = b"\n".join([_line(f"r{n}") for n in range(150)] + [b"{bad", b"[]"]) + b"\n"
    job, _ = _create(client, content)
    with client.rt.engine.connect() as conn:
        job_row = conn.execute(select(jobs_table).where(jobs_table.c.id == job)).one()
    assert (job_row.status, job_row.lane, job_row.tenant) == ("validating", "batch", "acme")
    assert job_row.expires_at == pytest.approx(job_row.created_at + 24 * 3600)

    no_worker.crash_at_chunk = 2
    with pytest.raises(Crash):
        ingest(client, job)
    now = time.time()
    with client.rt.engine.connect() as conn:
        written = conn.execute(select(requests.c.id).where(requests.c.job_id == job)).all()
        assert len(written) == 128
        # a lost producer's stream is failed; a batch's intake is restarted instead
        assert job not in [j for j, _ in jobs.stalled_intakes(conn, quiet_since=now + 1)]
        assert jobs.unread_batches(conn, created_before=now + 1, quiet_since=now + 1) == [job]
        # ...but not while its last request is younger than the stall timeout
        assert jobs.unread_batches(conn, created_before=now + 1, quiet_since=now - 900) == []

    no_worker.crash_at_chunk = None
    assert ingest(client, job) == 22  # only what the first read did not write
    assert ingest(client, job) == 0  # read already
    status = client.status(job)
    assert status.state == "in_progress" and status.total == 150
    with client.rt.engine.connect() as conn:
        counts = conn.execute(select(jobs_table.c.accepted, jobs_table.c.duplicates,
                                     jobs_table.c.rejected).where(jobs_table.c.id == job)).one()
        batch = conn.execute(select(batches).where(batches.c.job_id == job)).one()
        keys = conn.execute(select(requests.c.idempotency_key)
                            .where(requests.c.job_id == job)).scalars().all()
        assert jobs.unread_batches(conn, created_before=now + 1, quiet_since=now + 1) == []
    assert tuple(counts) == (150, 0, 2)
    assert [(number, reason.split(":")[0]) for number, _, reason in batch.rejected] == [
        (151, "malformed JSON"), (152, "must be a JSON object, got list")]
    assert batch.in_progress_at >= batch.created_at
    assert sorted(key.partition(":")[2] for key in keys) == sorted(f"r{n}" for n in range(150))


def test_a_file_is_not_deleted_while_a_batch_reads_it(client: Client) -> None:
    job, file_id = _create(client, _line("only") + b"\n")
    files = Batches(client).files
    with pytest.raises(HttpError, match="still reading it") as refused:
        files.delete("acme", file_id)
    assert refused.value.status == 409 and refused.value.body["error"]["code"] == "file_in_use"
    assert files.get("acme", file_id)["id"] == file_id
    with pytest.raises(HttpError, match="no file"):
        files.delete("globex", file_id)  # another tenant's: not found, and still there
    assert ingest(client, job) == 1
    assert files.delete("acme", file_id) == {"id": file_id, "object": "file", "deleted": True}
    with pytest.raises(HttpError, match="no file"):
        files.get("acme", file_id)
