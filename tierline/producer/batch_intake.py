"""A batch's intake: its input file read into its job in the background, safe to run again.

``Batches.create`` writes the batch and its job (``validating``) in one transaction, answers,
and hands ``tierline.ingest_batch`` (:mod:`tierline.workers.tasks`) to the broker on the batch
lane's
ingress queue, which the router workers consume; that task calls :func:`ingest` on whichever
host takes it. Each valid line becomes a request whose idempotency key is
``<batch token>:<custom_id>``, the token being the job id's hex, so a second run (the task
redelivered after its worker died, or handed over again by the sweeper) writes only the
lines the first did not. The refused lines are recorded, and the job moved on to
``in_progress`` (``failed`` when no line was valid), in the transaction that ends the intake.

A batch cancelled while it is read stops being read at the next chunk, and whatever was
written after the cancel ends ``cancelled`` too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kombu.exceptions import OperationalError
from sqlalchemy import Connection, Engine

from tierline.producer.client import Client
from tierline.producer.files import Files, lines
from tierline.producer.intake import Line
from tierline.producer.openai_shapes import HttpError, request_fields
from tierline.record import batches as batch_record
from tierline.record import jobs as jobs_
from tierline.workers.app import ingress_queue

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
LANE = "batch"
MAX_CUSTOM_ID_CHARS = 200  # with the batch's token, within the 256 of an idempotency key


def publish(engine: Engine, job_id: str) -> bool:
    """Hand a batch's intake to the broker and note when; False when the broker is down
    (the batch stays ``validating`` and the sweeper hands it over later)."""
    from tierline.producer.batch_tasks import ingest_batch

    try:
        ingest_batch.apply_async(args=[job_id], queue=ingress_queue(LANE), retry=False)
    except OperationalError:
        log.warning("batch %s: the broker is unreachable; the sweeper will start its intake",
                    job_id)
        return False
    with engine.begin() as conn:
        batch_record.mark_enqueued(conn, job_id, time.time())
    return True


def ingest(client: Client, job_id: str) -> int:
    """Read a ``validating`` batch's input file into its job; returns how many requests it
    wrote (0 when the batch was read already or has ended)."""
    engine = client.rt.engine
    with engine.connect() as conn:
        row = batch_record.to_read(conn, job_id)
    if row is None:
        log.warning("batch %s: no such batch; nothing to read", job_id)
        return 0
    if row.status != "validating" or (row.expires_at is not None
                                      and row.expires_at < time.time()):
        with engine.begin() as conn:
            _end_leftovers(conn, job_id, time.time())
        return 0
    try:
        stored = Files(engine).get(row.tenant, row.input_file_id, with_content=True)
    except HttpError:  # deleted in the instant between the batch's creation and now
        with engine.begin() as conn:
            jobs_.fail_intake(conn, job_id, time.time(), f"the input file "
                              f"{row.input_file_id!r} was deleted before it was read")
        return 0
    custom_ids: dict[int, str] = {}
    rejected: list[tuple[int, str | None, str]] = []

    def reject(number: int, reason: str) -> None:
        reason = reason.replace("max_output_tokens:", "max_tokens:", 1)
        rejected.append((number, custom_ids.get(number), reason))

    def finish(conn: Connection) -> None:
        batch_record.mark_read(conn, job_id, rejected, time.time())
        _end_leftovers(conn, job_id, time.time())

    requests = _requests(lines(stored["content"]), token_of(job_id), custom_ids)
    report = client.submit_many(
        _while_validating(engine, job_id, requests, client.rt.policy.bundling.ingress_chunk),
        lane=LANE, tenant=row.tenant, on_reject=reject, collect_ids=False, into=job_id,
        finish=finish)
    return report.accepted


def token_of(job_id: str) -> str:
    """The prefix of a batch's idempotency keys: the same on every run of its intake, and
    unique to it, since custom ids repeat across batches."""
    return job_id.replace("-", "")


def _while_validating(engine: Engine, job_id: str, items: Iterable[Line], every: int
                      ) -> Iterator[Line]:
    """The items, until the job stops being ``validating`` (looked at every ``every``)."""
    for index, item in enumerate(items):
        if index and index % every == 0:
            with engine.connect() as conn:
                state = batch_record.job_status(conn, job_id)
            if state != "validating":
                log.info("batch %s: %s while it was read; reading stops", job_id, state)
                return
        yield item


def _end_leftovers(conn: Connection, job_id: str, now_s: float) -> None:
    """Requests written into a job after it was cancelled, expired or failed end as it did."""
    state = batch_record.job_status(conn, job_id)
    if state in ("cancelled", "expired", "failed"):
        jobs_.halt(conn, job_id, state, now_s)
    elif state == "validating":  # read too late: its window closed first
        jobs_.halt(conn, job_id, "expired", now_s)


def _requests(numbered: Iterable[Line], token: str, custom_ids: dict[int, str]
              ) -> Iterator[Line]:
    """Each input line as a tierline request, or as the reason it is refused."""
    seen: dict[str, int] = {}
    for line in numbered:
        if line.error is not None:
            yield line
            continue
        raw, error = _request(line.value, token)
        if raw is not None:
            custom_id = str(line.value["custom_id"])
            custom_ids[line.number] = custom_id
            if custom_id in seen:
                raw, error = None, (f"custom_id {custom_id!r} is repeated (first on line "
                                    f"{seen[custom_id]}); each must be unique in the file")
            seen.setdefault(custom_id, line.number)
        elif isinstance(line.value, dict) and isinstance(line.value.get("custom_id"), str):
            custom_ids[line.number] = line.value["custom_id"]
        yield Line(line.number, value=raw, error=error, nbytes=line.nbytes)


def _request(value: Any, token: str) -> tuple[dict[str, Any] | None, str | None]:
    """One line's request fields, or why it is refused."""
    if not isinstance(value, dict):
        return None, f"must be a JSON object, got {type(value).__name__}"
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, "custom_id: missing; each line needs a non-empty string custom_id"
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        return None, f"custom_id: longer than {MAX_CUSTOM_ID_CHARS} characters"
    if value.get("method", "POST") != "POST":
        return None, f"method: must be \"POST\", got {_shown(value.get('method'))}"
    if value.get("url") != ENDPOINT:
        return None, (f"url: must be {ENDPOINT!r}, the batch's endpoint, got "
                      f"{_shown(value.get('url'))}")
    try:
        raw = request_fields(value.get("body"))
    except HttpError as exc:
        return None, f"body: {exc}"
    raw["id"] = f"{token}:{custom_id}"
    return raw, None


def _shown(value: Any, max_chars: int = 60) -> str:
    """A value for a reason: its repr, cut (a line's url may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= max_chars else text[:max_chars] + "..."
