"""The OpenAI Chat Completions dialect: request parsing, responses, SSE chunks, errors."""

from __future__ import annotations

from typing import Any

from tierline.sim.engine import ChatRequest, Completion, SimError
from tierline.sim.wire import messages_of, model_of, parse_body, positive_int, sse

ID_PREFIX = "chatcmpl-sim"
_ERROR_TYPES = {
    "invalid_request": ("invalid_request_error", None),
    "not_found": ("invalid_request_error", "model_not_found"),
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "server_error": ("server_error", None),
    "overloaded": ("server_error", "overloaded"),
}


def parse(body: bytes) -> ChatRequest:
    """A chat completions request, or a 400."""
    data = parse_body(body)
    model = model_of(data)
    messages = messages_of(data)
    system = "\n".join(text for role, text in messages if role in ("system", "developer"))
    chat = [(role, text) for role, text in messages if role not in ("system", "developer")]
    options = data.get("stream_options") or {}
    return ChatRequest(
        model=model,
        system=system,
        messages=chat or messages,
        max_tokens=positive_int(data, "max_completion_tokens", "max_tokens"),
        stream=bool(data.get("stream")),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        logprobs=_flag(data, "logprobs"),
    )


def _flag(data: dict[str, Any], key: str) -> bool:
    """An optional boolean field, or a 400."""
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise SimError("invalid_request", f"'{key}' must be a boolean", param=key)
    return bool(value)


def _usage(c: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    }


def reply(c: Completion, rid: str, created: int) -> dict[str, Any]:
    """A non-streamed chat.completion object."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": c.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": None,
                "finish_reason": c.finish,
            }
        ],
        "usage": _usage(c),
    }


def _chunk(
    c: Completion,
    rid: str,
    created: int,
    delta: dict[str, Any],
    finish: str | None,
    req: ChatRequest,
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if req.logprobs:
        choice["logprobs"] = logprobs
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": c.model,
        "choices": [choice],
    }
    if req.include_usage:
        body["usage"] = None
    return sse(body)


def stream_head(c: Completion, rid: str, created: int, req: ChatRequest) -> bytes:
    """The first chunk: the assistant role."""
    return _chunk(c, rid, created, {"role": "assistant", "content": ""}, None, req)


def stream_piece(c: Completion, rid: str, created: int, req: ChatRequest, i: int) -> bytes:
    """One content delta: the ``i``-th piece, with its logprob when asked for and known."""
    piece = c.pieces[i]
    logprobs = None
    if req.logprobs and c.logprobs is not None:
        token = {"token": piece, "logprob": c.logprobs[i], "bytes": list(piece.encode()),
                 "top_logprobs": []}
        logprobs = {"content": [token], "refusal": None}
    return _chunk(c, rid, created, {"content": piece}, None, req, logprobs)


def stream_tail(c: Completion, rid: str, created: int, req: ChatRequest) -> bytes:
    """The finish chunk, the usage chunk when asked for, and [DONE]."""
    out = _chunk(c, rid, created, {}, c.finish, req)
    if req.include_usage:
        out += sse(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": c.model,
                "choices": [],
                "usage": _usage(c),
            }
        )
    return out + sse(b"[DONE]")


def error(err: SimError) -> dict[str, Any]:
    """OpenAI's error shape."""
    kind, code = _ERROR_TYPES[err.kind]
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}
