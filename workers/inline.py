"""The tier engine run in the calling process: a gateway answers its realtime bundles itself,
with no broker hop, no prefork hand-off and no notification back (``TIERLINE_GATEWAY_CALLS=
inline``; see docs/gateway.md for the trade-off).

It is the tier worker's own code, :func:`workers.tasks.answer_bundle`: the same absorber
reservation in Redis, write-ahead attempts, ledger writes, fallbacks, deferrals and
deadlines. What the Celery task gets from its broker, redelivery after a fault, comes from
handing the bundle over: a bundle that meets any error here is published to its tier's
queue as ``resumed``, so a tier worker folds the calls written ahead and never recorded into
unknown-outcome attempts and answers the rest. A gateway that dies mid-call leaves its
bundle ``routed`` with its calls written ahead, as a SIGKILLed tier worker does: the
watchdog sends it again once it stops moving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from workers.runtime import Runtime

log = logging.getLogger(__name__)
DEFAULT_THREADS = 8  # bundles answered at once; each fans its calls out on the call pool


class InlineTier:
    """Answers bundles on a pool of threads; ``done(request_ids)`` is called after each,
    whether it was answered here or handed over to the tier's queue."""

    def __init__(self, rt: Runtime, done: Callable[[Sequence[str]], None],
                 threads: int = DEFAULT_THREADS) -> None:
        self.rt = rt
        self.done = done
        self._pool = ThreadPoolExecutor(max_workers=threads,
                                        thread_name_prefix="tierline-inline")
        self._lock = threading.Lock()
        self.busy = 0  # bundles taken and not yet finished

    def send(self, request_ids: list[str], queue: str) -> None:
        """Answer the bundle ``request_ids`` (routed to ``queue``) on the pool, then call
        ``done``."""
        with self._lock:
            self.busy += 1
        self._pool.submit(self._answer_then_done, request_ids, queue)

    def _answer_then_done(self, request_ids: list[str], queue: str) -> None:
        try:
            self.answer(request_ids, queue)
        finally:
            with self._lock:
                self.busy -= 1
            self.done(request_ids)

    def answer(self, request_ids: list[str], queue: str) -> None:
        """Answer the bundle in this thread; on any error, hand it to ``queue``'s tier worker."""
        from workers.tasks import answer_bundle, call_models

        try:
            answer_bundle(self.rt, request_ids, resumed=False, queue=queue)
        except Exception:  # the tier worker takes over, as a redelivery would
            log.warning("%d requests: answering them here failed; handed to %s", len(request_ids),
                        queue, exc_info=True)
            try:
                call_models.apply_async(args=[request_ids], kwargs={"resumed": True},
                                        queue=queue, retry=False)
            except Exception:  # noqa: BLE001 - the watchdog re-sends routed requests that stall
                log.warning("%d requests: the broker is unreachable too; the watchdog will "
                            "send them", len(request_ids), exc_info=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
