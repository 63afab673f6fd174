"""tierline: route LLM work to the cheapest model tier that does it well.

The Python API, on a client built from the environment on first use
(``TIERLINE_BROKER_URL``, ``TIERLINE_DATABASE_URL``, ``TIERLINE_POLICY`` / ``TIERLINE_ENV``)::

    import tierline
    job = tierline.submit_many([{"prompt": "..."}], lane="batch").job_id
    tierline.wait(job)
    for row in tierline.results(job): ...

With no ``TIERLINE_BROKER_URL`` set, the first call starts the embedded stack in this
process (as the ``tierline`` command does), with its record in the data directory
(``$TIERLINE_HOME``, default ``~/.local/share/tierline``); it stops when the process exits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tierline.producer.client import Client, JobStatus, SubmitReport

__all__ = ["Client", "JobStatus", "SubmitReport", "default_client", "submit", "submit_many",
           "wait", "results", "status", "stream"]

_default: Client | None = None
_embedded: list[bool] = []  # non-empty when the default client runs the embedded stack


def __getattr__(name: str) -> Any:
    """``Client``, ``JobStatus`` and ``SubmitReport``, imported on first use, so the command
    line starts without loading the database and broker libraries."""
    if name in ("Client", "JobStatus", "SubmitReport"):
        from tierline.producer import client as client_module

        return getattr(client_module, name)
    raise AttributeError(f"module 'tierline' has no attribute {name!r}")


def default_client() -> Client:
    """The process's default client: on the servers the environment names, or on the
    embedded stack (started once, stopped at exit) when it names no broker."""
    global _default
    if _default is None:
        from tierline.config.settings import settings_in_force
        from tierline.producer.client import Client
        from tierline.producer.embedded import process_stack

        settings = settings_in_force()
        if settings.embedded:
            _embedded.append(True)
        _default = Client(process_stack(settings) if settings.embedded else None)
    return _default


def submit(prompt: str | None = None, **fields: Any) -> str:
    """Accept one request; returns its id."""
    return default_client().submit(prompt, **fields)


def submit_many(items: Iterable[Any], **options: Any) -> SubmitReport:
    """Accept many requests, streamed; returns the job id and counts."""
    report = default_client().submit_many(items, **options)
    if _embedded:
        from tierline.producer.embedded import resume_unfinished

        resume_unfinished(default_client(), report.earlier_jobs)
    return report


def wait(job_id: str, **options: Any) -> JobStatus:
    """Block until the job is finished (or the timeout passes)."""
    return default_client().wait(job_id, **options)


def status(job_id: str) -> JobStatus:
    """Counts of a job's requests by state."""
    return default_client().status(job_id)


def results(job_id: str) -> Iterator[dict[str, Any]]:
    """The job's results in input order."""
    return default_client().results(job_id)


def stream(item: str | dict[str, Any], **options: Any) -> Iterator[str]:
    """Submit one request and yield its answer as the model writes it."""
    return default_client().stream(item, **options)
