"""A Celery worker that consumes only its own queues, so several can share one process.

Celery keeps the queues a worker consumes in one app-wide selection:
``WorkController.setup_queues`` calls ``app.amqp.queues.select(...)``, and the consumer's
``Tasks`` bootstep builds its task consumer from that selection each time it starts (at
start-up and after every broker reconnect). Two controllers in one process would both
consume whatever was selected last. A :class:`DedicatedWorker` keeps its queues on
itself instead: it never selects, and an extra consumer step, which runs right after
the stock ``Tasks`` step on every (re)start and before the loop starts consuming, points
the task consumer at the worker's own queues. (Replacing the ``Tasks`` step instead
would mean replacing every step that requires it by class: ``Control`` and others.)

Nothing else in a worker reads the selection (``app.amqp.TaskConsumer`` falls back on it,
and only ``Tasks`` calls that). Remote control's ``active_queues`` reports the worker's own
task consumer; ``add_consumer``/``cancel_consumer`` change it too, and edit the selection,
which no dedicated worker reads; a queue added that way lasts until the next reconnect.
The embedded stack runs one for the realtime lane and one for the others, so a batch flood
cannot take the threads realtime needs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps
from celery.worker import WorkController
from celery.worker.consumer import Consumer
from celery.worker.consumer.tasks import Tasks
from kombu import Queue


class _OwnQueues(bootsteps.StartStopStep):
    """Points the task consumer that ``Tasks`` built at the worker's own queues."""

    requires = (Tasks,)  # runs after it, on every (re)start; consuming starts later, in the loop

    def start(self, c: Consumer) -> None:
        consumer = c.task_consumer
        for queue in list(consumer.queues):
            consumer.cancel_by_queue(queue.name)
        for queue in c.controller.own_queues:
            consumer.add_queue(queue)


class _OwnQueuesConsumer(Consumer):
    """Celery's consumer plus the :class:`_OwnQueues` step."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [*Consumer.Blueprint.default_steps, _OwnQueues]


class DedicatedWorker(WorkController):
    """A worker controller consuming ``queues`` and nothing else, whatever else runs beside it."""

    own_queues: list[Queue]

    def __init__(self, app: Celery, queues: list[str], **options: Any) -> None:
        super().__init__(app=app, queues=queues, consumer_cls=_OwnQueuesConsumer, **options)

    def setup_queues(self, include: list[str], exclude: list[str] | None = None) -> None:
        # Looked up, not selected: a missing queue is declared as Celery would declare it.
        self.own_queues = [self.app.amqp.queues[name] for name in include]
