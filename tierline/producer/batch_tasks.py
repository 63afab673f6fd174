"""The batch intake task: a worker reads a batch's input file into its job."""

from __future__ import annotations

from celery import Task

from tierline.producer.batch_intake import ingest
from tierline.producer.client import Client
from tierline.workers.app import app
from tierline.workers.runtime import runtime
from tierline.workers.tasks import through_faults


@app.task(name="tierline.ingest_batch", bind=True, max_retries=None)
def ingest_batch(self: Task, job_id: str) -> int:
    """Read a batch's input file into its job (``tierline.producer.batch_intake``): safe to run
    twice,
    a second run writes only the lines the first did not."""

    return through_faults(self, lambda: ingest(Client(runtime()), job_id))
