"""Anthropic Messages ``/v1/messages``: system messages lifted to ``system``, ``x-api-key``
and ``anthropic-version`` headers, named stream events.

The Messages API returns no logprobs, so a call's ``early_stop`` rule does not apply here:
its answers always run to their end (or ``max_tokens``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tierline.router.errors import MalformedResponse, Unavailable
from tierline.workers.providers.base import (
    Completion,
    ModelCall,
    checked_text,
    messages_text,
    usage_or_estimate,
)
from tierline.workers.providers.http import HttpProvider, StreamReader
from tierline.workers.providers.sse import iter_events
from tierline.workers.providers.wire import (
    as_dict,
    endpoint,
    error_text,
    iter_body,
    parse_object,
    str_or_none,
)

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic's stop reasons in the OpenAI vocabulary, so the judge reads one language.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicProvider(HttpProvider):
    """A Messages endpoint; ``api_key`` goes in ``x-api-key``."""

    def __init__(self, *, base_url: str | None, api_key: str | None, client: httpx.Client) -> None:
        if not base_url:
            raise ValueError("AnthropicProvider needs a base_url")
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(endpoint(base_url, "messages"), headers, client)

    def payload(self, call: ModelCall, *, stream: bool) -> dict[str, Any]:
        """The request body: system messages joined into ``system``, the rest in order."""
        system = [m["content"] for m in call.messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [m for m in call.messages if m.get("role") != "system"],
            "max_tokens": call.max_output_tokens,
            "temperature": call.temperature,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if stream:
            body["stream"] = True
        return body

    def parse(self, body: dict[str, Any], call: ModelCall, *, latency_s: float) -> Completion:
        return parse_message(body, call, latency_s=latency_s)

    def read_stream(self, response: httpx.Response, call: ModelCall, *, deadline_at: float
                    ) -> StreamReader:
        state = _StreamState()
        deltas = _deltas(response, call, state, deadline_at=deadline_at)
        return deltas, lambda latency_s: state.completion(call, latency_s)


def parse_message(body: dict[str, Any], call: ModelCall, *, latency_s: float) -> Completion:
    """A Completion from a Messages body, or MalformedResponse naming what is missing."""
    model = call.model
    content = body.get("content")
    if not isinstance(content, list):
        detail = f": {error_text(json.dumps(body))}" if "error" in body else ""
        raise MalformedResponse(f"{model}: response has no content list{detail}", model=model)
    blocks = [block for block in content if isinstance(block, dict) and block.get("type") == "text"]
    text = "".join(block["text"] for block in blocks if isinstance(block.get("text"), str))
    stop_reason = str_or_none(body.get("stop_reason"))
    finish_reason = _FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None
    text = checked_text(text, finish_reason, model)
    usage = as_dict(body.get("usage"))
    tokens_in, tokens_out, estimated = usage_or_estimate(
        _input_tokens(usage), usage.get("output_tokens"), messages_text(call.messages), text
    )
    return Completion(
        text=text,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        usage_estimated=estimated,
        latency_s=latency_s,
        finish_reason=finish_reason,
        model=str_or_none(body.get("model")) or model,
    )


def _input_tokens(usage: dict[str, Any]) -> Any:
    """Prompt tokens including cache reads and writes, which ``input_tokens`` leaves out."""
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    counts = [usage.get(key) for key in keys]
    if not isinstance(counts[0], int):
        return None
    return sum(c for c in counts if isinstance(c, int) and not isinstance(c, bool))


@dataclass(slots=True)
class _StreamState:
    """What the stream said besides text: stop reason, usage, the served model name."""

    pieces: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None

    def completion(self, call: ModelCall, latency_s: float) -> Completion:
        """The assembled answer, held to the same rules as a non-streamed one."""
        body = {
            "content": [{"type": "text", "text": "".join(self.pieces)}],
            "stop_reason": self.stop_reason,
            "usage": self.usage,
            "model": self.model,
        }
        return parse_message(body, call, latency_s=latency_s)


def _deltas(
    response: httpx.Response, call: ModelCall, state: _StreamState, *, deadline_at: float
) -> Iterator[str]:
    """Text deltas until ``message_stop``; a stream that ends before it is MalformedResponse."""
    model = call.model
    try:
        for event in iter_events(iter_body(response, deadline_at=deadline_at, model=model)):
            data = parse_object(event.data, model)
            kind = event.name if event.name != "message" else str(data.get("type", ""))
            if kind == "message_stop":
                return
            if kind == "error":
                reason = f"{model}: error mid-stream: {error_text(event.data)}"
                raise Unavailable(reason, model=model)
            if kind == "message_start" and isinstance(data.get("message"), dict):
                state.model = str_or_none(data["message"].get("model"))
                state.usage.update(as_dict(data["message"].get("usage")))
            elif kind == "message_delta":
                delta = as_dict(data.get("delta"))
                state.stop_reason = str_or_none(delta.get("stop_reason")) or state.stop_reason
                state.usage.update(as_dict(data.get("usage")))  # output_tokens here is cumulative
            elif kind == "content_block_delta":
                delta = as_dict(data.get("delta"))
                text = delta.get("text") if delta.get("type") == "text_delta" else None
                if isinstance(text, str) and text:
                    state.pieces.append(text)
                    yield text
        raise MalformedResponse(f"{model}: stream ended before message_stop", model=model)
    finally:
        response.close()
