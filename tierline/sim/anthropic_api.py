"""The Anthropic Messages dialect: request parsing, responses, SSE events, errors."""

from __future__ import annotations

from typing import Any

from tierline.sim.engine import ChatRequest, Completion, SimError
from tierline.sim.wire import content_text, messages_of, model_of, parse_body, positive_int, sse

ID_PREFIX = "msg_sim"
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "server_error": "api_error",
    "overloaded": "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens"}


def parse(body: bytes) -> ChatRequest:
    """A messages request, or a 400 (max_tokens is required, as in the real API)."""
    data = parse_body(body)
    model = model_of(data)
    messages = messages_of(data)
    max_tokens = positive_int(data, "max_tokens", required=True)
    return ChatRequest(
        model=model,
        system=content_text(data.get("system"), "system"),
        messages=messages,
        max_tokens=max_tokens,
        stream=bool(data.get("stream")),
    )


def _message(
    c: Completion, rid: str, content: list[dict[str, str]], stop: str | None, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": c.prompt_tokens, "output_tokens": output_tokens},
    }


def reply(c: Completion, rid: str, created: int) -> dict[str, Any]:
    """A non-streamed message object."""
    return _message(
        c, rid, [{"type": "text", "text": c.text}], _STOP[c.finish], c.completion_tokens
    )


def stream_head(c: Completion, rid: str, created: int, req: ChatRequest) -> bytes:
    """message_start and content_block_start."""
    return sse(
        {"type": "message_start", "message": _message(c, rid, [], None, 1)}, "message_start"
    ) + sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )


def stream_piece(c: Completion, rid: str, created: int, req: ChatRequest, i: int) -> bytes:
    """One content_block_delta: the ``i``-th piece."""
    delta = {"type": "text_delta", "text": c.pieces[i]}
    return sse(
        {"type": "content_block_delta", "index": 0, "delta": delta},
        "content_block_delta",
    )


def stream_tail(c: Completion, rid: str, created: int, req: ChatRequest) -> bytes:
    """content_block_stop, message_delta (stop reason, usage) and message_stop."""
    return (
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": _STOP[c.finish], "stop_sequence": None},
                "usage": {"output_tokens": c.completion_tokens},
            },
            "message_delta",
        )
        + sse({"type": "message_stop"}, "message_stop")
    )


def error(err: SimError) -> dict[str, Any]:
    """Anthropic's error shape."""
    return {"type": "error", "error": {"type": _ERROR_TYPES[err.kind], "message": err.message}}
