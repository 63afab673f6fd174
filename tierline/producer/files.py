"""OpenAI's Files API on the gateway: uploads kept whole in the database, any host reads them.

Only ``purpose: batch`` is taken, the input of a batch (:mod:`tierline.producer.batches`). A batch's
output and error files are not stored: their ids name the batch (``file-out-<job id>``,
``file-err-<job id>``) and their content is written from its results when asked for. So a
list of files holds the uploads only, and only uploads can be deleted; an upload is not
deleted while a batch is still reading it (``validating``).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from tierline.producer.intake import Line, parse_jsonl
from tierline.producer.openai_shapes import HttpError, bad, not_found
from tierline.record import uploads

MAX_FILE_BYTES = 100 << 20  # the whole upload body, separate from the chat body's limit
UPLOAD_PURPOSE = "batch"
OUTPUT_PURPOSE = "batch_output"
OUTPUT_PREFIX, ERROR_PREFIX = "file-out-", "file-err-"
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class Upload:
    """The fields of a ``multipart/form-data`` upload: ``purpose`` and the file."""

    purpose: str | None
    filename: str | None
    content: bytes | None


@dataclass(frozen=True)
class Download:
    """A file's content as it is sent: chunks, and their length when known in advance."""

    chunks: Iterable[bytes]
    length: int | None = None
    kind: str = "application/jsonl"


def parse_form(content_type: str | None, body: bytes) -> Upload:
    """Read the ``purpose`` field and the ``file`` part of a multipart body; 400 otherwise."""
    kind, _, params = (content_type or "").partition(";")
    boundary = next((value.strip().strip('"') for name, _, value in
                     (p.strip().partition("=") for p in params.split(";"))
                     if name.lower() == "boundary"), None)
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise bad("upload the file as multipart/form-data with fields \"purpose\" and \"file\"",
                  "invalid_content_type")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name, filename = _disposition(head.decode("utf-8", "replace"))
        if name is not None:
            fields[name] = (filename, value.removesuffix(b"\r\n"))
    purpose = fields.get("purpose")
    upload = fields.get("file")
    return Upload(purpose[1].decode("utf-8", "replace") if purpose else None,
                  upload[0] if upload else None, upload[1] if upload else None)


def _disposition(head: str) -> tuple[str | None, str | None]:
    """The ``name`` and ``filename`` of a part's Content-Disposition header."""
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        params = {}
        for item in value.split(";")[1:]:
            name, _, quoted = item.strip().partition("=")
            params[name.lower()] = quoted.strip().strip('"')
        return params.get("name"), params.get("filename")
    return None, None


class Files:
    """The files table, for one gateway: uploads, their objects and their content."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upload(self, tenant: str, form: Upload) -> dict[str, Any]:
        """Keep an uploaded batch input; 400 for a wrong purpose, no file, or one that is
        empty or not JSONL (when no line at all is a JSON object)."""
        if form.purpose != UPLOAD_PURPOSE:
            raise bad(f"purpose: must be \"batch\", got {form.purpose!r}; only batch input "
                      "files are taken", "invalid_purpose")
        if form.content is None:
            raise bad("file: missing; send the JSONL file as the \"file\" field", "missing_file")
        check_jsonl(lines(form.content))
        row = {"id": f"file-{uuid.uuid4().hex}", "tenant": tenant, "purpose": UPLOAD_PURPOSE,
               "filename": (form.filename or "upload.jsonl")[:512],
               "bytes": len(form.content), "created_at": time.time(), "content": form.content}
        with self.engine.begin() as conn:
            uploads.add(conn, row)
        return file_object(row)

    def get(self, tenant: str, file_id: str, *, purpose: str = UPLOAD_PURPOSE,
            with_content: bool = False) -> dict[str, Any]:
        """A stored file of ``tenant``; 404 when there is none (or it is another tenant's)."""
        with self.engine.connect() as conn:
            row = uploads.find(conn, tenant, file_id, purpose, with_content=with_content)
        if row is None:
            raise not_found(f"no file {file_id!r}")
        return row

    def hold(self, conn: Connection, tenant: str, file_id: str) -> None:
        """Check in ``conn``'s transaction that ``tenant`` has the upload, and keep it from
        being deleted (:meth:`delete`) until that transaction ends; 404 when there is none."""
        if not uploads.hold(conn, tenant, file_id, UPLOAD_PURPOSE):
            raise not_found(f"no file {file_id!r}")

    def list(self, tenant: str, *, purpose: str | None, limit: int, after: str | None,
             order: str) -> dict[str, Any]:
        """The tenant's uploads by creation time (``order`` asc or desc), ``limit`` of them
        after the file ``after``; 400 for a cursor that names none of them."""
        with self.engine.connect() as conn:
            rows = uploads.page(conn, tenant, purpose=purpose, limit=limit + 1, after=after,
                                newest_first=order == "desc")
        if rows is None:
            raise bad(f"after: no file {after!r} among yours; give the id of the last "
                      "file of the page before", "invalid_after")
        data = [file_object(row) for row in rows[:limit]]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}

    def delete(self, tenant: str, file_id: str) -> dict[str, Any]:
        """Delete an upload of ``tenant``: 404 when there is none, 409 while a batch is still
        reading it (``validating``); a batch that has read it goes on without it."""
        with self.engine.begin() as conn:
            # Locked first, so a batch being created from it is either seen here or, once
            # this commits, finds the file gone.
            if not uploads.lock(conn, tenant, file_id):
                raise not_found(f"no file {file_id!r}")
            reader = uploads.reading_batch(conn, file_id)
            if reader is not None:
                raise HttpError(409, f"file {file_id!r} is the input of batch "
                                f"'batch_{reader}', which is still reading it (validating); "
                                "delete it once the batch is in_progress, or cancel the batch",
                                "invalid_request_error", "file_in_use")
            uploads.remove(conn, file_id)
        return {"id": file_id, "object": "file", "deleted": True}


def lines(content: bytes) -> Iterator[Line]:
    """An upload's JSONL lines, numbered from 1, bad ones carrying why."""
    return parse_jsonl(io.BytesIO(content))


def check_jsonl(numbered: Iterable[Line]) -> None:
    """400 for a file with no line, or none that is a JSON object (naming the first fault)."""
    first_fault = None
    for line in numbered:
        if line.error is None and isinstance(line.value, dict):
            return
        first_fault = first_fault or (f"line {line.number}: " + (
            line.error or f"must be a JSON object, got {type(line.value).__name__}"))
    if first_fault is None:
        raise bad("file: the file is empty; give one JSON request per line", "empty_file")
    raise bad(f"file: not JSONL, no line is a JSON object ({first_fault})", "invalid_file")


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's file object."""
    return {"id": row["id"], "object": "file", "bytes": row["bytes"],
            "created_at": int(row["created_at"]), "filename": row["filename"],
            "purpose": row["purpose"], "status": "processed", "status_details": None}


def jsonl(items: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """JSON lines, encoded, about 64 KiB at a time."""
    buffer: list[bytes] = []
    size = 0
    for item in items:
        buffer.append(json.dumps(item).encode() + b"\n")
        size += len(buffer[-1])
        if size >= 1 << 16:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)
