"""The OpenAI-compatible HTTP gateway: chat completions, files and batches through tierline.

An ASGI app (Starlette's router, :mod:`tierline.gateway.app`) served by uvicorn
(:mod:`tierline.gateway.server`) under one set of :class:`~tierline.gateway.limits.Limits`.
Before a route reads a body, :mod:`tierline.gateway.guard` checks the framing and headers,
the API key (:mod:`tierline.gateway.auth`: the YAML keys file and the database's keys) and
the key's and its tenant's limits (:mod:`tierline.gateway.quota`).

``POST /v1/chat/completions`` accepts one request, waits for its answer within the lane's
latency budget (:mod:`tierline.gateway.chat`), and answers in OpenAI's shape plus a ``tierline``
object (request id, job id, tier, USD, lane). The lane comes from the ``X-Tierline-Lane``
header (default ``realtime``); ``Idempotency-Key`` is the request's idempotency key, so a
repeat returns the earlier request's answer and does no new work. The body's ``model`` is
not obeyed: tierline picks the model, and the answer names it. ``"stream": true`` is
answered as server-sent events in OpenAI's chunk shape.

``/v1/files`` and ``/v1/batches`` serve OpenAI's Files and Batch APIs for batch work
(:mod:`tierline.producer.batches`, :mod:`tierline.producer.batch_intake`,
:mod:`tierline.producer.files`).
"""

from tierline.gateway.app import make_app
from tierline.gateway.limits import DEFAULT_LIMITS, Limits
from tierline.gateway.server import serving

__all__ = ["DEFAULT_LIMITS", "Limits", "make_app", "serving"]
