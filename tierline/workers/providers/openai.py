"""OpenAI-compatible ``/v1/chat/completions``: OpenAI, vLLM, Ollama, llama.cpp server,
Together, Groq, Mistral, DeepSeek.

A call with ``early_stop`` is streamed with ``logprobs: true``: each chunk's
``choices[0].logprobs.content[*].logprob`` feeds the rule's monitor, and when it says stop
the stream is closed and the answer so far returned with finish reason ``early_stop`` and
the usage of the tokens received (the server's report comes only at the end, so the count
of tokens seen stands in, flagged estimated). A server that sends no logprobs never stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from tierline.router.errors import MalformedResponse, Unavailable
from tierline.router.live.early_stop import EARLY_STOP, StopMonitor
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


class OpenAIProvider(HttpProvider):
    """A chat-completions endpoint; ``api_key`` goes in ``Authorization: Bearer``."""

    def __init__(self, *, base_url: str | None, api_key: str | None, client: httpx.Client) -> None:
        if not base_url:
            raise ValueError("OpenAIProvider needs a base_url")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        super().__init__(endpoint(base_url, "chat/completions"), headers, client)

    def payload(self, call: ModelCall, *, stream: bool) -> dict[str, Any]:
        """The request body for ``call``."""
        body: dict[str, Any] = {
            "model": call.model,
            "messages": list(call.messages),
            # max_tokens, not max_completion_tokens: every compatible server accepts it.
            "max_tokens": call.max_output_tokens,
            "temperature": call.temperature,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # usage in the final chunk
            if call.early_stop is not None:
                body["logprobs"] = True
        return body

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        """One whole answer; streamed when early stop needs its per-token logprobs."""
        if call.early_stop is not None and not call.stream:
            call = replace(call, stream=True)
        return super().complete(call, timeout_s=timeout_s)

    def parse(self, body: dict[str, Any], call: ModelCall, *, latency_s: float) -> Completion:
        return parse_completion(body, call, latency_s=latency_s)

    def read_stream(self, response: httpx.Response, call: ModelCall, *, deadline_at: float
                    ) -> StreamReader:
        state = _StreamState()
        deltas = _deltas(response, call, state, deadline_at=deadline_at)
        return deltas, lambda latency_s: state.completion(call, latency_s)


def parse_completion(body: dict[str, Any], call: ModelCall, *, latency_s: float) -> Completion:
    """A Completion from a chat-completions body, or MalformedResponse naming what is missing."""
    model = call.model
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = f": {error_text(json.dumps(body))}" if "error" in body else ""
        raise MalformedResponse(f"{model}: response has no choices{detail}", model=model)
    choice = choices[0]
    message = choice.get("message")
    finish_reason = str_or_none(choice.get("finish_reason"))
    text = _text_of(message.get("content")) if isinstance(message, dict) else None
    if text is None and isinstance(message, dict) and isinstance(message.get("refusal"), str):
        text, finish_reason = message["refusal"], "refusal"  # OpenAI's structured refusal
    if text is None:
        raise MalformedResponse(f"{model}: choices[0].message has no content", model=model)
    text = checked_text(text, finish_reason, model)
    usage = as_dict(body.get("usage"))
    tokens_in, tokens_out, estimated = usage_or_estimate(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        messages_text(call.messages),
        text,
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


@dataclass(slots=True)
class _StreamState:
    """What the stream said besides text: finish reason, usage, the served model name."""

    pieces: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    monitor: StopMonitor | None = None  # set when the call asked for early stop

    def completion(self, call: ModelCall, latency_s: float) -> Completion:
        """The assembled answer, held to the same rules as a non-streamed one."""
        usage = self.usage
        if self.finish_reason == EARLY_STOP and not usage and self.monitor is not None:
            usage = {"completion_tokens": self.monitor.tokens}  # prompt tokens: estimated
        body = {
            "choices": [
                {"message": {"content": "".join(self.pieces)}, "finish_reason": self.finish_reason}
            ],
            "usage": usage,
            "model": self.model,
        }
        return parse_completion(body, call, latency_s=latency_s)


def _deltas(
    response: httpx.Response, call: ModelCall, state: _StreamState, *, deadline_at: float
) -> Iterator[str]:
    """Text deltas until ``[DONE]``, or until early stop says enough; a stream that ends
    without either is MalformedResponse."""
    model = call.model
    state.monitor = call.early_stop.monitor() if call.early_stop is not None else None
    try:
        for event in iter_events(iter_body(response, deadline_at=deadline_at, model=model)):
            if event.data.strip() == "[DONE]":
                return
            chunk = parse_object(event.data, model)
            if chunk.get("error"):
                reason = f"{model}: error mid-stream: {error_text(event.data)}"
                raise Unavailable(reason, model=model)
            state.model = str_or_none(chunk.get("model")) or state.model
            if isinstance(chunk.get("usage"), dict):
                state.usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                finish_reason = str_or_none(choice.get("finish_reason"))
                state.finish_reason = finish_reason or state.finish_reason
                delta = choice.get("delta")
                text = _text_of(delta.get("content")) if isinstance(delta, dict) else None
                stop = state.monitor is not None and _feed(state.monitor, choice)
                if text:
                    state.pieces.append(text)
                    yield text
                if stop:
                    state.finish_reason = EARLY_STOP
                    return  # closes the response: no more tokens generated for us
        raise MalformedResponse(f"{model}: stream ended before [DONE]", model=model)
    finally:
        response.close()


def _feed(monitor: StopMonitor, choice: dict[str, Any]) -> bool:
    """Feed a chunk's token logprobs to ``monitor``; True once it says stop."""
    tokens = as_dict(choice.get("logprobs")).get("content")
    stop = False
    for token in tokens if isinstance(tokens, list) else ():
        logprob = token.get("logprob") if isinstance(token, dict) else None
        if isinstance(logprob, (int, float)) and not isinstance(logprob, bool):
            stop = monitor.feed(float(logprob)) or stop
    return stop


def _text_of(content: Any) -> str | None:
    """Message content as text: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part for part in content if isinstance(part, dict)]
        return "".join(part["text"] for part in parts if isinstance(part.get("text"), str))
    return None
