"""The tier engine run in the calling process: a gateway answers a realtime call itself, with
no broker hop, no prefork hand-off and no notification back (``TIERLINE_GATEWAY_CALLS=
inline``; see docs/gateway.md for the trade-off).

It is the tier worker's own code, :func:`tierline.workers.tasks.answer_bundle`: the same absorber
reservation in Redis, write-ahead attempts, ledger writes, fallbacks, deferrals and
deadlines. What the Celery task gets from its broker, redelivery after a fault, comes from
handing the bundle over: a bundle that meets any error here is published to its tier's
queue as ``resumed``, so a tier worker folds the calls written ahead and never recorded into
unknown-outcome attempts and answers the rest. A gateway that dies mid-call leaves its
requests ``routed`` and noted as sent, with their calls written ahead, as a SIGKILLed tier
worker does: the watchdog sends them again once they stop moving.
"""

from __future__ import annotations

import logging

from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)


def answer_here(rt: Runtime, request_ids: list[str], queue: str) -> None:
    """Answer the bundle ``request_ids`` (routed to ``queue``) in this thread; on any error,
    hand it to ``queue``'s tier worker."""
    from tierline.workers.tasks import answer_bundle, call_models

    try:
        answer_bundle(rt, request_ids, resumed=False, queue=queue)
    except Exception:  # the tier worker takes over, as a redelivery would
        log.warning("%d requests: answering them here failed; handed to %s", len(request_ids),
                    queue, exc_info=True)
        try:
            call_models.apply_async(args=[request_ids], kwargs={"resumed": True}, queue=queue,
                                    retry=False)
        except Exception:  # noqa: BLE001 - the watchdog re-sends routed requests that stall
            log.warning("%d requests: the broker is unreachable too; the watchdog will send "
                        "them", len(request_ids), exc_info=True)
