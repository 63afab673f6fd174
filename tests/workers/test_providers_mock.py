"""Providers against httpx.MockTransport: request shape, answers, usage and every error mapping."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tierline.router.errors import (
    DeadlineExceeded,
    MalformedResponse,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)
from tierline.workers.providers.anthropic import AnthropicProvider
from tierline.workers.providers.base import Completion, ModelCall, Provider
from tierline.workers.providers.openai import OpenAIProvider

Handler = Callable[[httpx.Request], httpx.Response]
CALL = ModelCall(
    model="m-1",
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    max_output_tokens=32,
)


def openai(handler: Handler, api_key: str | None = "sk-test") -> OpenAIProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIProvider(base_url="http://llm.test", api_key=api_key, client=client)


def anthropic(handler: Handler) -> AnthropicProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return AnthropicProvider(base_url="http://llm.test/v1", api_key="ak-test", client=client)


def chat_body(content: Any = "4", finish_reason: Any = "stop", usage: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "m-1-2026",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish_reason}],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return body


def usage(completion: Completion) -> tuple[int, int, bool]:
    return completion.tokens_in, completion.tokens_out, completion.usage_estimated


def reply(status: int = 200, body: Any = None, **kwargs: Any) -> Handler:
    return lambda request: httpx.Response(status, json=body, **kwargs)


def recorded(seen: list[httpx.Request], handler: Handler) -> Handler:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return record


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def sse(*events: str) -> Handler:
    text = "".join(f"{event}\n\n" for event in events)
    headers = {"content-type": "text/event-stream"}
    return lambda request: httpx.Response(200, content=text.encode(), headers=headers)


def error_of(provider: Provider, *, stream: bool = False) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        if stream:
            provider.stream(CALL, timeout_s=5).read()
        else:
            provider.complete(CALL, timeout_s=5)
    return caught.value


# -- the request and the answer ---------------------------------------------------------


def test_openai_sends_chat_completion_and_reads_answer_with_usage() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        usage = {"prompt_tokens": 21, "completion_tokens": 1}
        return httpx.Response(200, json=chat_body(usage=usage))

    completion = openai(handler).complete(CALL, timeout_s=5)
    request = seen[0]
    body = json.loads(request.content)
    assert request.url == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "m-1" and body["max_tokens"] == 32 and body["temperature"] == 0
    assert body["messages"] == list(CALL.messages) and "stream" not in body
    assert (completion.text, completion.finish_reason) == ("4", "stop")
    assert completion.model == "m-1-2026"
    assert usage(completion) == (21, 1, False)
    assert completion.latency_s >= 0


def test_openai_timeout_comes_from_the_callers_budget() -> None:
    timeouts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json=chat_body())

    openai(handler).complete(CALL, timeout_s=1.25)
    assert timeouts[0]["read"] == 1.25 and timeouts[0]["connect"] == 1.25


def test_openai_without_api_key_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []
    provider = openai(recorded(seen, reply(body=chat_body())), api_key=None)
    provider.complete(CALL, timeout_s=5)
    assert "authorization" not in seen[0].headers


def test_missing_usage_is_estimated_from_characters_and_flagged() -> None:
    provider = openai(reply(body=chat_body(content="four, of course")))
    completion = provider.complete(CALL, timeout_s=5)
    prompt_chars = len("Be brief.\nWhat is 2+2?")
    assert completion.usage_estimated is True
    assert completion.tokens_in == -(-prompt_chars // 4)
    assert completion.tokens_out == 4  # 15 characters / 4, rounded up


def test_empty_answer_passes_only_with_an_explicit_finish_reason() -> None:
    assert openai(reply(body=chat_body(content=""))).complete(CALL, timeout_s=5).text == ""
    error = error_of(openai(reply(body=chat_body(content="", finish_reason=None))))
    assert isinstance(error, MalformedResponse) and "empty answer" in str(error)


def test_anthropic_lifts_system_message_and_sends_its_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={
            "model": "m-1", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "4"}],
            "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 3},
        })  # fmt: skip

    completion = anthropic(handler).complete(CALL, timeout_s=5)
    request = seen[0]
    body = json.loads(request.content)
    assert request.url == "http://llm.test/v1/messages"
    assert request.headers["x-api-key"] == "ak-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert body["max_tokens"] == 32
    assert (completion.text, completion.finish_reason) == ("4", "stop")
    assert usage(completion) == (15, 1, False)


def test_anthropic_without_system_message_sends_no_system_field() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        body = {"content": [{"type": "text", "text": "hi"}], "stop_reason": "max_tokens"}
        return httpx.Response(200, json=body)

    call = ModelCall(model="m-1", messages=[{"role": "user", "content": "hello"}],
                     max_output_tokens=4)
    completion = anthropic(handler).complete(call, timeout_s=5)
    assert "system" not in seen[0]
    assert completion.finish_reason == "length" and completion.usage_estimated is True


# -- error mapping ------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_rate_limited_for_that_long() -> None:
    body = {"error": {"message": "slow down"}}
    error = error_of(openai(reply(429, body, headers={"Retry-After": "7"})))
    assert isinstance(error, RateLimited) and error.retry_after_s == 7.0
    assert "slow down" in str(error) and error.model == "m-1"


def test_429_with_retry_after_http_date_waits_until_that_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = error_of(openai(reply(429, {}, headers={"Retry-After": when})))
    assert isinstance(error, RateLimited) and 27 <= error.retry_after_s <= 31


def test_429_with_retry_after_date_in_the_past_retries_now() -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    error = error_of(openai(reply(429, {}, headers={"Retry-After": past})))
    assert isinstance(error, RateLimited) and error.retry_after_s == 0.0


def test_429_without_retry_after_waits_one_second() -> None:
    error = error_of(anthropic(reply(429, {"type": "error", "error": {"message": "rate"}})))
    assert isinstance(error, RateLimited) and error.retry_after_s == 1.0


def test_429_prefers_retry_after_ms() -> None:
    error = error_of(openai(reply(429, {}, headers={"retry-after-ms": "250", "Retry-After": "1"})))
    assert isinstance(error, RateLimited) and error.retry_after_s == 0.25


@pytest.mark.parametrize("status", [500, 502, 503, 529, 408])
def test_server_errors_are_unavailable(status: int) -> None:
    error = error_of(openai(reply(status, {"error": {"message": "overloaded"}})))
    assert type(error) is Unavailable and error.retryable and "overloaded" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_rejected_with_the_servers_reason(status: int) -> None:
    error = error_of(anthropic(reply(status, {"type": "error", "error": {"message": "bad key"}})))
    assert type(error) is Rejected and not error.retryable
    assert f"HTTP {status}" in str(error) and "bad key" in str(error)


def test_rejected_reason_is_truncated_plain_text() -> None:
    error = error_of(openai(lambda r: httpx.Response(400, text="nope " * 500)))
    assert isinstance(error, Rejected) and "nope" in str(error) and len(str(error)) < 400


def test_fastapi_style_detail_is_the_reason() -> None:
    error = error_of(openai(reply(404, {"detail": "model not found"})))
    assert isinstance(error, Rejected) and "model not found" in str(error)


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read"), httpx.ConnectTimeout("connect"), httpx.PoolTimeout("pool")],
)
def test_timeouts_are_unavailable_and_chained(exc: Exception) -> None:
    error = error_of(openai(raising(exc)))
    assert type(error) is Unavailable and "timed out" in str(error)
    assert error.__cause__ is exc


def test_connection_errors_are_unavailable() -> None:
    exc = httpx.ConnectError("refused")
    error = error_of(anthropic(raising(exc)))
    assert type(error) is Unavailable and error.__cause__ is exc


def test_endpoint_without_scheme_is_rejected_not_retried() -> None:
    client = httpx.Client(transport=httpx.HTTPTransport())
    for base_url in ("localhost:8000", "ftp://models.internal"):
        provider = OpenAIProvider(base_url=base_url, api_key=None, client=client)
        with pytest.raises(Rejected):
            provider.complete(CALL, timeout_s=1)


def test_non_json_body_is_malformed() -> None:
    error = error_of(openai(lambda r: httpx.Response(200, text="<html>gateway</html>")))
    assert isinstance(error, MalformedResponse) and "not JSON" in str(error)
    assert isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"object": "chat.completion"}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"message": {"role": "assistant"}}]}, "no content"),
        ({"choices": [{"message": {"content": None}}]}, "no content"),
        ([1, 2], "not an object"),
        ({"error": {"message": "upstream died"}}, "upstream died"),
    ],
)
def test_wrong_schema_is_malformed_naming_what_is_missing(body: Any, reason: str) -> None:
    error = error_of(openai(reply(body=body)))
    assert isinstance(error, MalformedResponse) and reason in str(error)


def test_anthropic_without_content_is_malformed() -> None:
    error = error_of(anthropic(reply(body={"id": "msg_1", "stop_reason": "end_turn"})))
    assert isinstance(error, MalformedResponse) and "no content" in str(error)


def test_body_over_the_size_cap_is_malformed() -> None:
    huge = b'{"choices": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    error = error_of(openai(lambda r: httpx.Response(200, content=huge)))
    assert isinstance(error, MalformedResponse) and "cap" in str(error)


def test_chunked_body_over_the_size_cap_is_malformed_without_reading_it_all() -> None:
    served: list[int] = []

    def chunks() -> Any:
        for _ in range(1000):  # 1000 × 64 KiB would be 64 MiB
            served.append(1)
            yield b"x" * 65536

    error = error_of(openai(lambda r: httpx.Response(200, content=chunks())))
    assert isinstance(error, MalformedResponse) and "cap" in str(error)
    assert len(served) < 200


def test_no_remaining_budget_raises_deadline_exceeded_without_calling() -> None:
    calls: list[httpx.Request] = []
    for provider in (openai(recorded(calls, reply())), anthropic(recorded(calls, reply()))):
        for timeout_s in (0.0, -1.0):
            with pytest.raises(DeadlineExceeded):
                provider.complete(CALL, timeout_s=timeout_s)
            with pytest.raises(DeadlineExceeded):
                provider.stream(CALL, timeout_s=timeout_s)
    assert calls == []


# -- streaming ----------------------------------------------------------------------------


def openai_chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"model": "m-1", "choices": [choice]})


def test_openai_stream_yields_deltas_and_usage_from_the_final_chunk() -> None:
    seen: list[httpx.Request] = []
    events = [
        ": keep-alive",
        'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}',
        openai_chunk("Hel"),
        openai_chunk("lo"),
        openai_chunk(finish="stop"),
        'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}',
        "data: [DONE]",
    ]
    handler = sse(*events)
    stream = openai(recorded(seen, handler)).stream(CALL, timeout_s=5)
    assert list(stream) == ["Hel", "lo"]
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    completion = stream.completion
    assert (completion.text, completion.finish_reason) == ("Hello", "stop")
    assert usage(completion) == (9, 2, False)


def test_complete_of_a_streaming_call_assembles_the_stream() -> None:
    seen: list[httpx.Request] = []
    handler = sse(openai_chunk("Hi", "stop"), "data: [DONE]")
    call = ModelCall(model="m-1", messages=CALL.messages, max_output_tokens=8, stream=True)
    completion = openai(recorded(seen, handler)).complete(call, timeout_s=5)
    assert completion.text == "Hi" and json.loads(seen[0].content)["stream"] is True


def test_openai_stream_without_usage_is_estimated() -> None:
    completion = (
        openai(sse(openai_chunk("abcdefgh", "stop"), "data: [DONE]"))
        .stream(CALL, timeout_s=5)
        .read()
    )
    assert completion.usage_estimated is True and completion.tokens_out == 2


def test_openai_stream_cut_before_done_is_malformed_after_the_deltas_it_had() -> None:
    stream = openai(sse(openai_chunk("Hel"), openai_chunk("lo"))).stream(CALL, timeout_s=5)
    received: list[str] = []
    with pytest.raises(MalformedResponse, match=r"\[DONE\]"):
        for delta in stream:
            received.append(delta)
    assert received == ["Hel", "lo"]


def test_openai_stream_cut_inside_an_event_is_malformed() -> None:
    error = error_of(openai(sse(openai_chunk("Hel"), 'data: {"choices": [{"ind')), stream=True)
    assert isinstance(error, MalformedResponse) and "not JSON" in str(error)


def test_openai_stream_error_event_is_unavailable() -> None:
    handler = sse(openai_chunk("Hel"), 'data: {"error": {"message": "server overloaded"}}')
    error = error_of(openai(handler), stream=True)
    assert isinstance(error, Unavailable) and "server overloaded" in str(error)


def test_stream_status_errors_raise_before_the_first_delta() -> None:
    provider = openai(reply(429, {}, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited):
        provider.stream(CALL, timeout_s=5)


def anthropic_events(*, stop: bool = True) -> list[str]:
    events = [
        ("message_start", {"type": "message_start", "message": {"model": "m-1",
                           "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "lo"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 2}}),
    ]  # fmt: skip
    if stop:
        events.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data)}" for name, data in events]


def test_anthropic_stream_reads_named_events_into_a_completion() -> None:
    seen: list[httpx.Request] = []
    stream = anthropic(recorded(seen, sse(*anthropic_events()))).stream(CALL, timeout_s=5)
    assert list(stream) == ["Hel", "lo"]
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and sent["system"] == "Be brief."
    completion = stream.completion
    assert (completion.text, completion.finish_reason) == ("Hello", "stop")
    assert usage(completion) == (11, 2, False)


def test_anthropic_stream_cut_before_message_stop_is_malformed() -> None:
    error = error_of(anthropic(sse(*anthropic_events(stop=False))), stream=True)
    assert isinstance(error, MalformedResponse) and "message_stop" in str(error)


def test_anthropic_stream_error_event_is_unavailable() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    error_event = f"event: error\ndata: {json.dumps(overloaded)}"
    handler = sse(*anthropic_events(stop=False)[:2], error_event)
    error = error_of(anthropic(handler), stream=True)
    assert type(error) is Unavailable and "Overloaded" in str(error)


def test_completion_is_unavailable_until_the_stream_is_read() -> None:
    stream = anthropic(sse(*anthropic_events())).stream(CALL, timeout_s=5)
    with pytest.raises(RuntimeError):
        _ = stream.completion
    with stream:
        assert next(stream) == "Hel"
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(RuntimeError):
        _ = stream.completion
