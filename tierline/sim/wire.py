"""Helpers both API dialects share: JSON bodies, message contents, SSE framing."""

from __future__ import annotations

import json
from typing import Any, Protocol

from tierline.sim.engine import ChatRequest, Completion, SimError


class Dialect(Protocol):
    """One API dialect (a module: openai_api, anthropic_api): parse, reply, stream, error."""

    ID_PREFIX: str

    def parse(self, body: bytes) -> ChatRequest: ...
    def reply(self, c: Completion, rid: str, created: int) -> dict[str, Any]: ...
    def stream_head(self, c: Completion, rid: str, created: int, req: ChatRequest) -> bytes: ...
    def stream_piece(
        self, c: Completion, rid: str, created: int, req: ChatRequest, i: int
    ) -> bytes: ...
    def stream_tail(self, c: Completion, rid: str, created: int, req: ChatRequest) -> bytes: ...
    def error(self, err: SimError) -> dict[str, Any]: ...


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object, or a 400."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimError("invalid_request", f"request body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SimError("invalid_request", "request body must be a JSON object")
    return data


def content_text(content: Any, where: str) -> str:
    """Text of a message content: a string, or a list of parts with 'text'."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise SimError(
        "invalid_request", f"{where}: content must be a string or a list of parts", param=where
    )


def messages_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) pairs of a request's 'messages', or a 400 naming the bad one."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError(
            "invalid_request", "'messages' is required: a non-empty list", param="messages"
        )
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise SimError(
                "invalid_request", f"messages[{i}] needs a 'role'", param=f"messages[{i}]"
            )
        out.append((message["role"], content_text(message.get("content"), f"messages[{i}]")))
    return out


def positive_int(data: dict[str, Any], *keys: str, required: bool = False) -> int | None:
    """The first of ``keys`` present, validated as a positive integer."""
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SimError("invalid_request", f"'{key}' must be a positive integer", param=key)
        return value
    if required:
        raise SimError("invalid_request", f"'{keys[0]}' is required", param=keys[0])
    return None


def model_of(data: dict[str, Any]) -> str:
    """The request's model name, or a 400."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise SimError("invalid_request", "'model' is required: a string", param="model")
    return model


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (data if isinstance(data, bytes) else dumps(data)) + b"\n\n"
