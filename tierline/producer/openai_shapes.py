"""OpenAI's shapes on the gateway: its errors, a chat body read as a tierline request, and a
done request written back as a ``chat.completion``. Shared by the chat and batch paths."""

from __future__ import annotations

import time
from typing import Any


class HttpError(Exception):
    """An answer other than 200, in OpenAI's error shape."""

    def __init__(self, status: int, message: str, kind: str, code: str, *,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "code": code}}
        self.headers = headers or []  # e.g. Retry-After on a 429


def bad(message: str, code: str) -> HttpError:
    """A 400 naming what is wrong."""
    return HttpError(400, message, "invalid_request_error", code)


def not_found(message: str) -> HttpError:
    return HttpError(404, message, "invalid_request_error", "not_found")


def request_fields(body: Any) -> dict[str, Any]:
    """The tierline request fields of an OpenAI chat body; raises 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise bad(f"the body must be a JSON object, got {type(body).__name__}", "invalid_body")
    stream, options = streaming(body)
    if options is not None and not stream:
        raise bad("stream_options: only allowed with \"stream\": true", "stream_options")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: must be a non-empty list of {\"role\", \"content\"} objects",
                  "messages")
    texts = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad(f"messages[{index}]: must be an object with string \"role\" and "
                      "\"content\"", "messages")
        texts.append(_content(message.get("content"), index))
    raw: dict[str, Any] = {"messages": [{"role": m["role"], "content": text}
                                        for m, text in zip(messages, texts, strict=True)]}
    for ours, theirs in (("max_output_tokens", "max_tokens"), ("metadata", "metadata")):
        if body.get(theirs) is not None:
            raw[ours] = body[theirs]
    return raw


def _content(content: Any, index: int) -> str:
    """A message's text: a string, or OpenAI's content parts with their text parts joined
    by newlines; 400 for a part tierline cannot take (an image, audio, a file)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise bad(f"messages[{index}]: must be an object with string \"role\" and \"content\" "
                  "(a string or a list of {\"type\": \"text\", \"text\": ...} parts)",
                  "messages")
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            what = f"type {kind!r}" if isinstance(kind, str) else "a part without a type"
            raise bad(f"messages[{index}].content[{number}]: {what} is not supported; "
                      "tierline routes text only, give {\"type\": \"text\", \"text\": ...} "
                      "parts", "unsupported_content")
        if not isinstance(part.get("text"), str):
            raise bad(f"messages[{index}].content[{number}]: a text part needs a string "
                      "\"text\"", "messages")
        texts.append(part["text"])
    return "\n".join(texts)


def streaming(body: Any) -> tuple[bool, dict[str, Any] | None]:
    """A body's ``stream`` flag and ``stream_options``; raises 400 for ill-typed ones."""
    stream = body.get("stream") if isinstance(body, dict) else None
    options = body.get("stream_options") if isinstance(body, dict) else None
    if stream is not None and not isinstance(stream, bool):
        raise bad(f"stream: must be true or false, got {stream!r}", "stream")
    if options is not None and not isinstance(options, dict):
        raise bad("stream_options: must be an object such as {\"include_usage\": true}",
                  "stream_options")
    return bool(stream), options


def completion(row: dict[str, Any], job_id: str, *, created_at: float | None,
               tokens_in: int | None, tokens_out: int | None) -> dict[str, Any]:
    """OpenAI's chat.completion for a done request (a row of ``Client.results``), plus a
    ``tierline`` object. ``usage`` counts the tokens of every attempt, i.e. what was billed."""
    body: dict[str, Any] = {
        "id": f"chatcmpl-{row['id']}", "object": "chat.completion",
        "created": int(created_at or time.time()), "model": row["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": row["content"]},
                     "finish_reason": "stop"}],
    }
    if tokens_in is not None and tokens_out is not None:
        body["usage"] = {"prompt_tokens": int(tokens_in), "completion_tokens": int(tokens_out),
                         "total_tokens": int(tokens_in) + int(tokens_out)}
    body["tierline"] = {"request_id": row["id"], "job_id": job_id, "tier": row["tier"],
                        "usd": row["usd"], "lane": row["lane"]}
    return body
