"""tierline: route LLM work to the cheapest model tier that does it well.

The Python API, on a client built from the environment on first use
(``TIERLINE_BROKER_URL``, ``TIERLINE_DATABASE_URL``, ``TIERLINE_POLICY`` / ``TIERLINE_ENV``)::

    import tierline
    job = tierline.submit_many([{"prompt": "..."}], lane="batch").job_id
    tierline.wait(job)
    for row in tierline.results(job): ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tierline.client import Client, JobStatus, SubmitReport

__all__ = ["Client", "JobStatus", "SubmitReport", "submit", "submit_many", "wait", "results",
           "status", "stream"]

_default: Client | None = None


def client() -> Client:
    """The process's default client."""
    global _default
    if _default is None:
        _default = Client()
    return _default


def submit(prompt: str | None = None, **fields: Any) -> str:
    """Accept one request; returns its id."""
    return client().submit(prompt, **fields)


def submit_many(items: Iterable[Any], **options: Any) -> SubmitReport:
    """Accept many requests, streamed; returns the job id and counts."""
    return client().submit_many(items, **options)


def wait(job_id: str, **options: Any) -> JobStatus:
    """Block until the job is finished (or the timeout passes)."""
    return client().wait(job_id, **options)


def status(job_id: str) -> JobStatus:
    """Counts of a job's requests by state."""
    return client().status(job_id)


def results(job_id: str) -> Iterator[dict[str, Any]]:
    """The job's results in input order."""
    return client().results(job_id)


def stream(item: str | dict[str, Any], **options: Any) -> Iterator[str]:
    """Submit one request and yield its answer as the model writes it."""
    return client().stream(item, **options)
