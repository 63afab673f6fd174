"""OpenAI's Batch API on the gateway: a batch is a tierline job on the ``batch`` lane.

``create`` checks the call, writes the batch and its job (``validating``) and answers at once;
the uploaded JSONL file (:mod:`tierline.producer.files`) is then read into the job in the background
(:mod:`tierline.producer.batch_intake`), each line's chat body a tierline request as the chat path
reads one. A bad line is reported (in the batch's ``errors`` and its error file), never
fatal to the others. The batch id is the job's id prefixed ``batch_``, and its status is the
job's state, which already follows OpenAI's. Each line's ``custom_id``, prefixed with a token
of its batch, is its request's idempotency key: custom ids repeat across batches, so they may
not collide, and a repeat within one file is refused like any other bad line.

What a batch adds to its job (input file, metadata, refused lines) is a row of the batches
table; the output and error files are written from the job's results each time they are
read, so nothing is copied.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tierline.producer.batch_intake import ENDPOINT, LANE, publish
from tierline.producer.batch_output import ANSWERED, ERRED, error_lines, output_lines
from tierline.producer.client import Client, JobStatus
from tierline.producer.files import (
    ERROR_PREFIX,
    OUTPUT_PREFIX,
    OUTPUT_PURPOSE,
    Download,
    Files,
    file_object,
    jsonl,
)
from tierline.producer.openai_shapes import HttpError, bad, not_found
from tierline.record import batches as batch_record
from tierline.record import records
from tierline.record.jobs import TERMINAL

COMPLETION_WINDOW = "24h"
COMPLETION_WINDOW_S = 24 * 3600.0
JOB_NAME = "batch"
PREFIX = "batch_"
MAX_ERRORS_SHOWN = 100  # in the batch object; the error file has them all


class Batches:
    """Batches of one gateway, each owned by the tenant that created it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.files = Files(client.rt.engine)

    def create(self, tenant: str, body: Any) -> dict[str, Any]:
        """Write the batch and its job, ``validating``, and answer at once; its input file
        is read in the background (:mod:`tierline.producer.batch_intake`)."""
        file_id, metadata = _creation(body)
        if file_id.startswith((OUTPUT_PREFIX, ERROR_PREFIX)):
            raise bad(f"input_file_id: {file_id!r} is a batch's output (purpose batch_output); "
                      "give a file uploaded with purpose \"batch\"", "invalid_purpose")
        job_id, now = str(uuid.uuid4()), time.time()
        with self.client.rt.engine.begin() as conn:
            self.files.hold(conn, tenant, file_id)
            records.create_job(conn, job_id, name=JOB_NAME, tenant=tenant, lane=LANE,
                               now_s=now, expires_at=now + COMPLETION_WINDOW_S)
            batch_record.add(conn, job_id, tenant=tenant, input_file_id=file_id,
                             metadata=metadata, now_s=now)
        created = self.retrieve(tenant, PREFIX + job_id)  # before a worker can move it on
        self._publish(job_id)
        return created

    def _publish(self, job_id: str) -> bool:
        """Hand the batch's intake to the broker (False when it is down)."""
        return publish(self.client.rt.engine, job_id)

    def retrieve(self, tenant: str, batch_id: str) -> dict[str, Any]:
        self._record(tenant, batch_id)  # 404 unless it is the tenant's
        status = self.client.status(batch_id.removeprefix(PREFIX))
        # Read after the status: the intake writes its rejected lines in the transaction that
        # ends it, so a batch seen ended is never shown without them.
        record, _ = self._record(tenant, batch_id)
        return self._object(batch_id, record, status)

    def list(self, tenant: str, limit: int, after: str | None) -> dict[str, Any]:
        """The tenant's batches, most recent first; ``after`` is the last id of a page."""
        since = (after.removeprefix(PREFIX), self._record(tenant, after)[1]) if after else None
        with self.client.rt.engine.connect() as conn:
            ids = [PREFIX + job_id
                   for job_id in batch_record.page(conn, tenant, limit=limit + 1, after=since)]
        data = [self.retrieve(tenant, batch_id) for batch_id in ids[:limit]]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(ids) > limit}

    def cancel(self, tenant: str, batch_id: str) -> dict[str, Any]:
        """Cancel as tierline does: unanswered requests end cancelled, answers are kept."""
        self._record(tenant, batch_id)
        self.client.cancel(batch_id.removeprefix(PREFIX))
        return self.retrieve(tenant, batch_id)

    def file(self, tenant: str, file_id: str) -> dict[str, Any]:
        """The file object of an upload, or of a batch's output or error file."""
        if not file_id.startswith((OUTPUT_PREFIX, ERROR_PREFIX)):
            return file_object(self.files.get(tenant, file_id))
        size = sum(len(chunk) for chunk in self.content(tenant, file_id).chunks)
        job_id = file_id.removeprefix(OUTPUT_PREFIX).removeprefix(ERROR_PREFIX)
        kind = "output" if file_id.startswith(OUTPUT_PREFIX) else "error"
        return file_object({"id": file_id, "bytes": size, "created_at": time.time(),
                            "filename": f"{PREFIX}{job_id}_{kind}.jsonl",
                            "purpose": OUTPUT_PURPOSE})

    def content(self, tenant: str, file_id: str) -> Download:
        """A file's content: an upload as stored, an output or error file written now."""
        if file_id.startswith((OUTPUT_PREFIX, ERROR_PREFIX)):
            job_id, record = self._output_of(tenant, file_id)
            written = (error_lines(self.client, job_id, record["rejected"])
                       if file_id.startswith(ERROR_PREFIX) else output_lines(self.client, job_id))
            return Download(jsonl(written))
        row = self.files.get(tenant, file_id, with_content=True)
        return Download([row["content"]], len(row["content"]))

    def delete_file(self, tenant: str, file_id: str) -> dict[str, Any]:
        """Delete an upload (see :meth:`Files.delete`). An output or error file is written
        from its batch's results when read, so there is nothing stored to delete: 400."""
        if file_id.startswith((OUTPUT_PREFIX, ERROR_PREFIX)):
            job_id, _ = self._output_of(tenant, file_id)
            raise bad(f"{file_id!r} is not stored: it is written from the results of batch "
                      f"'{PREFIX}{job_id}' each time it is read, so it cannot be deleted on its "
                      "own", "not_deletable")
        return self.files.delete(tenant, file_id)

    def _output_of(self, tenant: str, file_id: str) -> tuple[str, dict[str, Any]]:
        """The job and record of the batch an output or error file belongs to; 404 if none
        of the tenant's."""
        job_id = file_id.removeprefix(OUTPUT_PREFIX).removeprefix(ERROR_PREFIX)
        try:
            record, _ = self._record(tenant, PREFIX + job_id)
        except HttpError as exc:
            raise not_found(f"no file {file_id!r}") from exc
        return job_id, record

    def _record(self, tenant: str, batch_id: str) -> tuple[dict[str, Any], float]:
        """What the batch adds to its job, and when it was created; 404 if not the tenant's."""
        with self.client.rt.engine.connect() as conn:
            row = batch_record.find(conn, tenant, batch_id.removeprefix(PREFIX))
        if row is None or not batch_id.startswith(PREFIX):
            raise not_found(f"no batch {batch_id!r}")
        return {"input_file_id": row["input_file_id"], "metadata": row["metadata"],
                "rejected": row["rejected"], "in_progress_at": row["in_progress_at"]
                }, row["created_at"]

    def _object(self, batch_id: str, record: dict[str, Any], status: JobStatus
                ) -> dict[str, Any]:
        """OpenAI's batch object for the job, from its record and its status."""
        job_id = batch_id.removeprefix(PREFIX)
        with self.client.rt.engine.connect() as conn:
            job = batch_record.job_times(conn, job_id)
        rejected = record["rejected"]
        done, erred = _count(status, ANSWERED), _count(status, ERRED) + len(rejected)
        ended = status.state in TERMINAL
        at = {state: int(job.finished_at) if status.state == state and job.finished_at
              else None for state in ("completed", "failed", "expired", "cancelled")}
        errors = [{"code": "invalid_request", "message": reason, "param": custom_id,
                   "line": number} for number, custom_id, reason in rejected[:MAX_ERRORS_SHOWN]]
        if status.error:
            errors.append({"code": "batch_failed", "message": status.error, "param": None,
                           "line": None})
        return {
            "id": batch_id, "object": "batch", "endpoint": ENDPOINT,
            "errors": {"object": "list", "data": errors} if errors else None,
            "input_file_id": record["input_file_id"],
            "completion_window": COMPLETION_WINDOW, "status": status.state,
            "output_file_id": OUTPUT_PREFIX + job_id if ended and done else None,
            "error_file_id": ERROR_PREFIX + job_id if ended and erred else None,
            "created_at": int(job.created_at),
            "in_progress_at": (int(record["in_progress_at"])
                               if status.total and record["in_progress_at"] else None),
            "expires_at": int(job.expires_at) if job.expires_at else None,
            "finalizing_at": None, "completed_at": at["completed"], "failed_at": at["failed"],
            "expired_at": at["expired"], "cancelling_at": at["cancelled"],
            "cancelled_at": at["cancelled"],
            "request_counts": {"total": status.total + len(rejected), "completed": done,
                               "failed": erred},
            "metadata": record["metadata"],
        }


def _creation(body: Any) -> tuple[str, dict[str, Any] | None]:
    """The input file id and metadata of a create call; 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise bad(f"the body must be a JSON object, got {type(body).__name__}", "invalid_body")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise bad("input_file_id: missing; upload the JSONL file with POST /v1/files first",
                  "missing_input_file_id")
    if body.get("endpoint") != ENDPOINT:
        raise bad(f"endpoint: only {ENDPOINT!r} is served, got {body.get('endpoint')!r}",
                  "invalid_endpoint")
    if body.get("completion_window") != COMPLETION_WINDOW:
        raise bad(f"completion_window: only {COMPLETION_WINDOW!r} is supported, got "
                  f"{body.get('completion_window')!r}", "invalid_completion_window")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad("metadata: must be an object of strings", "invalid_metadata")
    return file_id, metadata


def _count(status: JobStatus, states: tuple[str, ...]) -> int:
    return sum(status.by_status.get(state, 0) for state in states)
