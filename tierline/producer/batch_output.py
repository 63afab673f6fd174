"""A batch's output and error files, written from its job's results as they are read.

The output file has one line per answered request, its body the ``chat.completion`` the chat
path would answer; the error file has the input lines that were refused, then the requests
that failed, expired or were cancelled, in OpenAI's shapes. Rows are read in chunks, so a
batch of any size streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from tierline.producer.client import Client
from tierline.producer.openai_shapes import completion
from tierline.record import batches as batch_record

ANSWERED, ERRED = ("done",), ("failed", "expired", "cancelled")
CHUNK = 500


def output_lines(client: Client, job_id: str) -> Iterator[dict[str, Any]]:
    """The output file's lines: each answered request, in input order."""
    rows = client.results(job_id)
    while chunk := list(islice(rows, CHUNK)):
        answered = [row for row in chunk if row["status"] in ANSWERED]
        with client.rt.engine.connect() as conn:
            billed = batch_record.billed(conn, [row["id"] for row in answered])
        for row in answered:
            created_at, tokens_in, tokens_out = billed[row["id"]]
            body = completion(row, job_id, created_at=created_at, tokens_in=tokens_in,
                              tokens_out=tokens_out)
            yield {"id": f"batch_req_{row['id']}", "custom_id": _custom_id(row),
                   "response": {"status_code": 200, "request_id": row["id"], "body": body},
                   "error": None}


def error_lines(client: Client, job_id: str, rejected: list[list[Any]]
                ) -> Iterator[dict[str, Any]]:
    """The error file's lines: the refused input lines (line, custom id, reason), then the
    requests that failed, expired or were cancelled."""
    for number, custom_id, reason in rejected:
        yield {"id": f"batch_req_{job_id}_line{number}", "custom_id": custom_id,
               "response": {"status_code": 400, "request_id": None, "body": {"error": {
                   "message": f"line {number}: {reason}", "type": "invalid_request_error",
                   "code": "invalid_request"}}},
               "error": None}
    yield from (_error_line(row) for row in client.results(job_id) if row["status"] in ERRED)


def _custom_id(row: dict[str, Any]) -> str:
    return str(row["key"]).partition(":")[2]


def _error_line(row: dict[str, Any]) -> dict[str, Any]:
    """An error file's line for a request that failed, expired or was cancelled."""
    if row["status"] == "failed":
        return {"id": f"batch_req_{row['id']}", "custom_id": _custom_id(row),
                "response": {"status_code": 502, "request_id": row["id"], "body": {"error": {
                    "message": f"request {row['id']} failed: {row['error']}",
                    "type": "upstream_error", "code": "failed"}}},
                "error": None}
    return {"id": f"batch_req_{row['id']}", "custom_id": _custom_id(row), "response": None,
            "error": {"code": f"batch_{row['status']}",
                      "message": f"request {row['id']} {row['status']}: {row['error']}"}}
