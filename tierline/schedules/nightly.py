"""Thin tasks that beat sends: the sweeper, and nightly classification jobs.

A nightly job is two tasks so that no worker waits for hours: ``classify_nightly`` streams
the job's rows into tierline and hands over to ``finish_classification``, which looks
again every ``FINISH_POLL_S`` until the job has ended, then writes the output file and
its summary. Both are safe to run twice (``acks_late`` redelivers): a job is named
``NAME@DAY`` and a day's job is submitted once; the output is rewritten whole.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tierline.record import jobs as jobs_
from tierline.schedules.sweeper import enqueue_stranded
from tierline.workers.app import app
from tierline.workers.runtime import runtime

log = logging.getLogger(__name__)

SCHEDULES_QUEUE = "schedules"
FINISH_POLL_S = 60.0


def run_name(name: str, now_s: float) -> str:
    """The job's name for one day: ``NAME@YYYY-MM-DD`` (UTC)."""
    return f"{name}@{datetime.fromtimestamp(now_s, UTC):%Y-%m-%d}"


def start_job(client: Any, job_file: Path, now_s: float) -> dict[str, Any]:
    """Submit today's run of a job file (once: a repeat finds the day's job and returns it)."""
    # Beat is a producer (DESIGN's flow): it submits through the same Python API as the CLI.
    from tierline.producer.classify_job import submit
    from tierline.producer.jobspec import load_job

    spec = load_job(job_file, settings=client.rt.settings)
    name = run_name(spec.name, now_s)
    out = spec.out_path(now_s)
    with client.rt.engine.connect() as conn:
        found = jobs_.named(conn, name)
    if found is not None:
        log.info("%s: already submitted as job %s", name, found)
        return {"job_file": str(job_file), "job_id": found, "run": "", "rows": 0,
                "accepted": 0, "rejected": 0, "not_enqueued": 0, "out": str(out),
                "errors": str(spec.errors_path(out))}
    job = submit(client, spec, now_s=now_s, name=name)
    log.info("%s: job %s: %d rows, %d accepted, %d rejected", name, job.job_id, job.rows,
             job.accepted, job.rejected)
    return {"job_file": str(job_file), "job_id": job.job_id, "run": job.run, "rows": job.rows,
            "accepted": job.accepted, "rejected": job.rejected,
            "not_enqueued": job.not_enqueued, "out": str(job.out), "errors": str(job.errors)}


def finish_job(client: Any, submitted: dict[str, Any]) -> dict[str, Any] | None:
    """Write the output of a submitted job once it has ended; None while it runs."""
    from tierline.producer.classify_job import Submitted, finish, summary_lines
    from tierline.producer.jobspec import load_job
    from tierline.producer.rows import read_errors

    if not client.status(submitted["job_id"]).complete:
        return None
    # the same file: the rows are read again
    spec = load_job(Path(submitted["job_file"]), settings=client.rt.settings)
    job = Submitted(submitted["job_id"], submitted["run"], submitted["rows"],
                    submitted["accepted"], submitted["rejected"], submitted["not_enqueued"],
                    Path(submitted["out"]), Path(submitted["errors"]))
    summary = finish(client, spec, job, read_errors(job.errors))
    data = summary.to_dict()
    job.out.with_name(job.out.name + ".summary.json").write_text(
        json.dumps(data, indent=1) + "\n", encoding="utf-8")
    for line in summary_lines(spec, summary):
        log.info("%s", line)
    return data


@app.task(name="tierline.sweep_stranded")
def sweep_stranded() -> int:
    """One sweep: fail jobs whose intake was interrupted, and enqueue accepted requests that
    never reached the broker (see ``tierline.schedules.sweeper``)."""
    return enqueue_stranded(runtime())


@app.task(name="tierline.watch_requests")
def watch_requests() -> dict[str, int]:
    """One watchdog pass: expire requests past their deadline, re-enqueue the stalled and
    those whose wait is over (see ``tierline.schedules.watchdog``)."""
    from tierline.schedules.watchdog import watch
    from tierline.workers.transient import TRANSIENT_ERRORS, transient

    try:
        done = watch(runtime())
    except TRANSIENT_ERRORS as exc:
        if not transient(exc):
            raise
        # the next pass, 15 s on, does this one's work: nothing to retry, nothing lost
        log.warning("watchdog: skipped a pass, the database or broker is away (%s)",
                    type(exc).__name__)
        return {"expired": 0, "resent": 0}
    return {"expired": done.expired, "resent": done.resent}


@app.task(name="tierline.classify_nightly")
def classify_nightly(job_file: str) -> str:
    """Submit today's run of a classification job file; its finisher takes over."""
    from tierline.producer.client import Client

    submitted = start_job(Client(runtime()), Path(job_file), time.time())
    finish_classification.apply_async(args=[submitted], countdown=FINISH_POLL_S,
                                       queue=SCHEDULES_QUEUE)
    return str(submitted["job_id"])


@app.task(name="tierline.finish_classification", bind=True, max_retries=None)
def finish_classification(self: Any, submitted: dict[str, Any]) -> dict[str, Any] | None:
    """Write a nightly job's output once it has ended; look again later while it runs."""
    from tierline.producer.client import Client

    summary = finish_job(Client(runtime()), submitted)
    if summary is None:
        raise self.retry(countdown=FINISH_POLL_S, queue=SCHEDULES_QUEUE)
    return summary
