"""The Python API producers use: submit work, wait for it, read its results."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from kombu.exceptions import OperationalError
from sqlalchemy import Connection

from tierline.producer.intake import Line
from tierline.record import jobs as jobs_
from tierline.record import records
from tierline.record.listener import listener_for
from tierline.router.envelope import build_request
from tierline.router.errors import InvalidInput
from tierline.workers.app import ingress_queue
from tierline.workers.runtime import Runtime, runtime

OnReject = Callable[[int, str], None]
OnRejectInput = Callable[[int, str, Any], None]  # (line, reason, the line's bytes or the item)
OnProgress = Callable[[int, int], None]  # (items, bytes) just processed
FINAL = ("done", "failed", "cancelled", "expired")


class Publish(Protocol):
    """Hands request ids of one lane to the router's ingress queue; raises kombu's
    ``OperationalError`` when the broker is unreachable (``retry``: kombu's retries first)."""

    def __call__(self, lane: str, request_ids: list[str], *, retry: bool) -> None: ...


def publish_to_router(lane: str, request_ids: list[str], *, retry: bool) -> None:
    """The broker's ingress queue of ``lane``, as a Celery message for the router task."""
    from tierline.workers.tasks import route_requests

    route_requests.apply_async(args=[request_ids], queue=ingress_queue(lane), retry=retry)


@dataclass
class SubmitReport:
    """What happened to a submission: the job and its counts; ``rejected`` lists (line, reason)."""

    job_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    not_enqueued: int = 0  # accepted but the broker was unreachable; the sweeper enqueues them
    request_ids: list[str] = field(default_factory=list)
    # Jobs that hold the duplicates (requests submitted before, under the same keys). When
    # every valid item is one, and all are in one job, ``job_id`` is that job: its results are
    # the answers to this submission, and no empty job is left behind.
    earlier_jobs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobStatus:
    """A job's lifecycle state (see ``tierline.record.jobs``) and its requests' counts by state."""

    job_id: str
    name: str | None
    state: str
    total: int
    by_status: dict[str, int]
    error: str | None = None

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FINAL)

    @property
    def complete(self) -> bool:
        """The job has ended: every request has its final state."""
        return self.state in jobs_.TERMINAL


class Client:
    """A producer's handle on tierline; holds the process's runtime (policy, database), what
    hands requests to the router (``publish``: the broker by default) and the clock."""

    def __init__(self, rt: Runtime | None = None, *, publish: Publish = publish_to_router,
                 clock: Callable[[], float] = time.time) -> None:
        self.rt = rt or runtime()
        self.publish = publish
        self.clock = clock

    def submit(self, prompt: str | None = None, *, messages: list[dict[str, str]] | None = None,
               lane: str = "standard", **fields: Any) -> str:
        """Accept one request and return its id (the existing id for a repeated idempotency key)."""
        raw = {"prompt": prompt, "messages": messages, "lane": lane, **fields}
        raw = {k: v for k, v in raw.items() if v is not None}
        report = self.submit_many([raw], lane=lane, on_reject=_raise)
        return report.request_ids[0]

    def submit_many(self, items: Iterable[Any], *, lane: str | None = None,
                    tenant: str | None = None, job: str | None = None,
                    on_reject: OnReject | None = None, on_progress: OnProgress | None = None,
                    on_reject_input: OnRejectInput | None = None,
                    completion_window_s: float | None = None,
                    collect_ids: bool = True, into: str | None = None,
                    finish: Callable[[Connection], None] | None = None) -> SubmitReport:
        """Accept requests from any iterable, streamed in chunks: each chunk is written to the
        database, then enqueued. Invalid items are reported through ``on_reject(line, reason)``
        and skipped; items may be dicts, prompt strings, or :class:`Line` objects from a file.
        ``on_reject_input(line, reason, source)`` is told the same, with what the item held
        (the line's bytes, or the item itself), e.g. for a rejects file that shows it.
        Items are untrusted: whatever they hold (deep nesting, 5,000-digit numbers, NaN,
        NUL, lone surrogates) is a rejection with a reason, never an exception.
        Requests still unanswered ``completion_window_s`` after submission end ``expired``.
        ``collect_ids=False`` leaves ``report.request_ids`` empty, for inputs too large to list.

        ``into`` fills a job opened beforehand (``validating``, see ``records.create_job``)
        instead of opening one; ``job`` and ``completion_window_s`` are then the job's own.
        Filled again after an interruption, with items that carry their idempotency keys, it
        writes only what is missing, and its counts are the job's, not this run's.
        ``finish(conn)`` runs in the transaction that ends the intake.
        """
        now = self.clock()
        report = SubmitReport(job_id=into or str(uuid.uuid4()))
        if into is None:
            with self.rt.engine.begin() as conn:
                records.create_job(conn, report.job_id, name=job, tenant=tenant or "default",
                                   lane=lane or "standard", now_s=now,
                                   expires_at=(now + completion_window_s if completion_window_s
                                               else None))
        broker_up = True
        chunk_size = self.rt.policy.bundling.ingress_chunk
        for chunk in records.iter_chunks(_numbered(items), chunk_size):
            valid = []
            for number, raw, error, _, source in chunk:
                if error is None:
                    try:
                        valid.append((number, build_request(
                            raw, self.rt.policy, now_s=self.clock(), new_id=time_ordered_id(),
                            lane=lane, tenant=tenant)))
                        continue
                    except InvalidInput as exc:
                        error = str(exc)
                report.rejected += 1
                if on_reject:
                    on_reject(number, error)
                if on_reject_input:
                    on_reject_input(number, error, source)
            with self.rt.engine.begin() as conn:
                new = records.accept_requests(conn, report.job_id, valid)
                if collect_ids:
                    ids = self._ids_of(conn, valid, set(new))
                    report.request_ids.extend(ids)
                    _note_earlier_jobs(conn, report, [i for i in ids if i not in set(new)])
            report.accepted += len(new)
            report.duplicates += len(valid) - len(new)
            if broker_up:
                broker_up = self._enqueue(valid, set(new))
            if not broker_up:
                report.not_enqueued += len(new)
            if on_progress:
                on_progress(len(chunk), sum(item[3] for item in chunk))
        with self.rt.engine.begin() as conn:
            if (into is None and report.accepted == 0 and report.duplicates
                    and len(report.earlier_jobs) == 1):  # a resubmission: the earlier job
                jobs_.drop(conn, report.job_id)
                report.job_id = report.earlier_jobs[0]
                jobs_.settle(conn, [report.job_id], self.clock())
                if finish:
                    finish(conn)
                return report
            if into is None:
                records.add_job_counts(conn, report.job_id, accepted=report.accepted,
                                       duplicates=report.duplicates, rejected=report.rejected)
            else:  # an earlier run may have written some: its requests are the job's too
                written = records.count_requests(conn, into)
                records.set_job_counts(conn, into, accepted=written, rejected=report.rejected,
                                       duplicates=max(report.accepted + report.duplicates
                                                      - written, 0))
            done = self.clock()
            if report.accepted == 0 and report.duplicates == 0 and report.rejected:
                jobs_.set_state(conn, report.job_id, "failed", now_s=done,
                                error=f"no valid request: all {report.rejected} were rejected")
            else:  # with nothing new to answer, settling completes the job at once
                jobs_.set_state(conn, report.job_id, "in_progress", now_s=done)
                jobs_.settle(conn, [report.job_id], done)
            if finish:
                finish(conn)
        return report

    def _ids_of(self, conn: Any, valid: list[Any], new: set[str]) -> list[str]:
        """Ids in input order: new ones, or the earlier request's id for a repeated key."""
        repeated = [r for _, r in valid if r.id not in new]
        earlier: dict[tuple[str, str], str] = {}
        for tenant in {r.tenant for r in repeated}:
            keys = [r.idempotency_key for r in repeated if r.tenant == tenant]
            for key, rid in records.existing_ids(conn, tenant, keys).items():
                earlier[(tenant, key)] = rid
        return [r.id if r.id in new else earlier.get((r.tenant, r.idempotency_key), r.id)
                for _, r in valid]

    def _enqueue(self, valid: list[Any], new: set[str]) -> bool:
        """Hand new requests to the ingress queues; False when the broker is unreachable."""
        by_lane: dict[str, list[str]] = {}
        for _, r in valid:
            if r.id in new:
                by_lane.setdefault(r.lane, []).append(r.id)
        try:
            for lane_name, ids in by_lane.items():
                self.publish(lane_name, ids, retry=False)
                with self.rt.engine.begin() as conn:
                    records.mark_enqueued(conn, ids, self.clock())
        except OperationalError:
            return False
        return True

    def status(self, job_id: str) -> JobStatus:
        """The job's state and its requests' counts by state (expiring it if its time is up)."""
        with self.rt.engine.begin() as conn:
            row = self._settled(conn, job_id)
            counts = records.job_counts(conn, job_id)
        return JobStatus(job_id, row.name, row.status, sum(counts.values()), counts, row.error)

    def _settled(self, conn: Connection, job_id: str) -> Any:
        """The job's row after settling it: completed when nothing is left, expired when its
        window has closed."""
        jobs_.settle(conn, [job_id], self.clock())
        row = jobs_.header(conn, job_id)
        if row is None:
            raise InvalidInput(f"no job {job_id!r}")
        return row

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel a job: unanswered requests end ``cancelled``; finished results are kept."""
        status = self.status(job_id)
        if status.state in jobs_.ACTIVE:
            with self.rt.engine.begin() as conn:
                jobs_.halt(conn, job_id, "cancelled", self.clock())
        return self.status(job_id)

    def resume(self, job_id: str) -> int:
        """Enqueue a job's unanswered requests again (after a broker loss or crash).

        Routing and answering are idempotent: finished requests are skipped and nothing
        is charged twice. Returns how many requests were enqueued.
        """
        self.status(job_id)
        with self.rt.engine.connect() as conn:
            todo = jobs_.unfinished(conn, job_id)
        by_lane: dict[str, list[str]] = {}
        for rid, lane in todo:
            by_lane.setdefault(lane, []).append(rid)
        size = self.rt.policy.bundling.ingress_chunk
        for lane, ids in by_lane.items():
            for start in range(0, len(ids), size):
                self.publish(lane, ids[start:start + size], retry=True)
        return len(todo)

    def wait(self, job_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.1,
             max_poll_s: float = 2.0, on_progress: Callable[[JobStatus], None] | None = None
             ) -> JobStatus:
        """Block until every request of the job has a result, or ``timeout_s`` passes.

        On Postgres it wakes as soon as results of the job, or its end, are committed
        (LISTEN/NOTIFY, see ``tierline.record.db.notify_jobs``). It also polls, quickly at first,
        then backing off to ``max_poll_s``, which is all it does on SQLite or when it cannot
        listen. A poll, or a notification, reads the job's row. Only a poll counts the
        requests by state for ``on_progress`` (most of a million-row job's index, 0.2-0.7 s
        of Postgres while the job runs), and so does the status returned.
        """
        next_poll = time.monotonic()
        deadline = next_poll + timeout_s
        listener = listener_for(self.rt.engine)
        # Listening before the first look: a commit after it is notified, one before is seen.
        with listener.bell(job_id) if listener else nullcontext(threading.Event()) as bell:
            while True:
                now = time.monotonic()
                polled = now >= next_poll  # a notification only asks whether the job ended
                if polled and on_progress or now >= deadline or self._ended(job_id):
                    status = self.status(job_id)
                    if on_progress:
                        on_progress(status)
                    if status.complete or now >= deadline:
                        return status
                if polled:
                    next_poll, poll_s = now + poll_s, min(poll_s * 1.5, max_poll_s)
                # one look for every bundle committed meanwhile
                if bell.wait(max(min(next_poll, deadline) - time.monotonic(), 0.0)):
                    bell.clear()

    def _ended(self, job_id: str) -> bool:
        with self.rt.engine.begin() as conn:
            return self._settled(conn, job_id).status in jobs_.TERMINAL

    def results(self, job_id: str) -> Iterator[dict[str, Any]]:
        """A job's requests with their results, in input order, streamed from the database."""
        self.status(job_id)  # raises for an unknown job
        with self.rt.engine.connect() as conn:
            yield from records.iter_results(conn, job_id)

    def stream(self, item: str | dict[str, Any], *, lane: str = "realtime",
               tenant: str | None = None, timeout_s: float | None = None) -> Iterator[str]:
        """Submit one request (a prompt, or a request dict as for :meth:`submit_many`) and
        yield its answer as the model writes it. Under a strategy that may replace the first
        answer (a cascade, a panel), the whole answer comes as one piece once accepted.

        Waits at most ``timeout_s`` (default: the lane's latency budget plus 2 s). Raises
        :class:`~tierline.producer.streams.RequestFailed` when the request fails, expires or is not
        answered in time (it stays in the database and is still answered), and
        :class:`~tierline.producer.streams.AnswerReplaced`, carrying the whole answer, when a call
        broke part-way and another model answered after some text was yielded.
        """
        from tierline.producer.streams import AnswerReplaced, RequestFailed, follow, rest_of

        raw = {"prompt": item} if isinstance(item, str) else dict(item)
        report = self.submit_many([raw | {"stream": True}], lane=lane, tenant=tenant,
                                  job="stream", on_reject=_raise)
        request_id = report.request_ids[0]
        if timeout_s is None:
            timeout_s = self.rt.policy.lanes[lane].latency_budget_s + 2.0  # type: ignore[index]
        deadline = time.monotonic() + timeout_s
        sent, replaced = "", False
        try:
            for piece in follow(self.rt, request_id, timeout_s):
                yield piece.text
                sent += piece.text
        except AnswerReplaced:
            replaced = True
        self.wait(report.job_id, timeout_s=max(deadline - time.monotonic(), 0.0))
        row = next(r for r in self.results(report.job_id) if r["id"] == request_id)
        if row["status"] != "done":
            why = row["error"] or f"not answered within {timeout_s:g} s; it is still answered"
            raise RequestFailed(f"request {request_id} {row['status']}: {why}", row["status"])
        rest = rest_of(row["content"] or "", sent, replaced, request_id)
        if rest:
            yield rest


def time_ordered_id() -> str:
    """A UUIDv7-shaped id: milliseconds since the epoch first, then 74 random bits.

    Request ids key the requests, decisions, attempts, charges and results indexes; random
    (v4) ids scatter every insert and every update of a million-row job across all their
    pages, so each write dirties a different page (and logs it whole after a checkpoint).
    Ids that grow with time keep one intake's writes on a few hot pages.
    """
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & (1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _numbered(items: Iterable[Any]) -> Iterator[tuple[int, Any, str | None, int, Any]]:
    """(line or position, raw item, parse error, bytes, what it held) for each input item."""
    for index, item in enumerate(items, start=1):
        if isinstance(item, Line):
            yield item.number, item.value, item.error, item.nbytes, (
                item.raw if item.raw is not None else item.value)
        elif isinstance(item, str):
            yield index, {"prompt": item}, None, 0, item
        else:
            yield index, item, None, 0, item


def _note_earlier_jobs(conn: Connection, report: SubmitReport, earlier_ids: list[str]) -> None:
    """Add the jobs of requests submitted before to ``report.earlier_jobs``."""
    if not earlier_ids:
        return
    for job_id in records.job_of(conn, earlier_ids).values():
        if job_id is not None and job_id != report.job_id and job_id not in report.earlier_jobs:
            report.earlier_jobs.append(job_id)


def _raise(_number: int, reason: str) -> None:
    raise InvalidInput(reason)
