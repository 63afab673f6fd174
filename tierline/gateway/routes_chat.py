"""``POST /v1/chat/completions`` and ``GET /v1/models``: one request routed and answered, whole
or as server-sent events (the chat logic is in :mod:`tierline.gateway.chat`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tierline.gateway import body
from tierline.gateway.context import Gateway, json_response, tenant_of
from tierline.gateway.errors import HttpError, log
from tierline.producer.openai_shapes import streaming


async def completions(request: Request) -> Response:
    gateway: Gateway = request.scope["gateway"]
    data = await body.read(request, gateway.limits.body_bytes, gateway.limits.read_timeout_s)
    parsed = body.parse_json(data)
    lane = request.headers.get("x-tierline-lane")
    key = request.headers.get("idempotency-key")
    tenant = tenant_of(request)
    stream, options = streaming(parsed)
    if not stream:
        answer = await run_in_threadpool(gateway.chat.complete, parsed, lane, key, tenant)
        return json_response(answer)
    include_usage = (options or {}).get("include_usage") is True
    events = await run_in_threadpool(gateway.chat.stream, parsed, lane, key, tenant,
                                     include_usage)
    return StreamingResponse(iterate_in_threadpool(_sse(events, request)),
                             headers={"Content-Type": "text/event-stream",
                                      "Cache-Control": "no-cache"})


def _sse(events: list[dict[str, Any]] | Iterator[dict[str, Any]],
         request: Request) -> Iterator[bytes]:
    """Server-sent events; an error midway is logged and ends the stream with an event
    that names the request id only."""
    try:
        for event in events:
            yield b"data: %s\n\n" % json.dumps(event).encode()
    except HttpError as exc:
        yield b"data: %s\n\n" % json.dumps(exc.body).encode()
    except Exception:
        request_id = request.scope["state"]["request_id"]
        log.exception("streaming %s (request id %s)", request.url.path, request_id)
        yield b"data: %s\n\n" % json.dumps({"error": {
            "message": f"internal error (request id {request_id})", "type": "server_error",
            "code": "internal"}}).encode()
        return
    yield b"data: [DONE]\n\n"


async def models(request: Request) -> Response:
    gateway: Gateway = request.scope["gateway"]
    return json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "tierline"}
        for name in gateway.client.rt.policy.models]})


async def healthz(request: Request) -> Response:
    return json_response({"ok": True})
