"""Hostile text at the provider boundary: a request that cannot be encoded is rejected (never
a UnicodeEncodeError), and an answer no database could store is a malformed response."""

from __future__ import annotations

import httpx
import pytest

from tierline.router.errors import MalformedResponse, ProviderError, Rejected
from tierline.workers.providers.base import ModelCall
from tierline.workers.providers.openai import OpenAIProvider


def _provider(body: bytes, sent: list[httpx.Request] | None = None) -> OpenAIProvider:
    def handler(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIProvider(base_url="http://llm.test", api_key="sk-test", client=client)


def _answer(content: bytes) -> bytes:
    return (b'{"model": "m-1", "choices": [{"index": 0, "finish_reason": "stop", '
            b'"message": {"role": "assistant", "content": ' + content + b"}}]}")


def _call(text: str = "hi") -> ModelCall:
    return ModelCall(model="m-1", messages=[{"role": "user", "content": text}], max_output_tokens=8)


def test_a_request_with_a_lone_surrogate_is_rejected_without_being_sent() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(Rejected, match="not Unicode"):
        _provider(_answer(b'"4"'), sent).complete(_call("\ud800"), timeout_s=5)
    assert sent == []


@pytest.mark.parametrize(("content", "says"), [
    (b'"a\\u0000b"', "NUL"),
    (b'"\\ud800"', "lone surrogate"),
    (b"[" * 100_000, "nested"),
    (b"9" * 5000, "not JSON"),
    (b"NaN", "not finite"),
])
def test_an_answer_that_could_not_be_stored_is_malformed(content: bytes, says: str) -> None:
    with pytest.raises(ProviderError) as failed:
        _provider(_answer(content)).complete(_call(), timeout_s=5)
    assert isinstance(failed.value, MalformedResponse)
    assert says in str(failed.value)


def test_unusual_but_valid_answers_are_kept() -> None:
    text = "emoji \U0001f600 and \\u escapes"
    done = _provider(_answer(b'"emoji \\ud83d\\ude00 and \\\\u escapes"')).complete(
        _call(), timeout_s=5)
    assert done.text == text
