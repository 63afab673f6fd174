"""The provider registry, endpoint resolution from the environment, the instant provider and
the server-sent-events parser."""

from __future__ import annotations

import httpx
import pytest

from tierline.router.errors import DeadlineExceeded, PolicyError, Rejected
from tierline.router.policy import ModelSpec
from tierline.workers.providers import PROVIDERS, ModelCall, provider_for, providers_for
from tierline.workers.providers.anthropic import AnthropicProvider
from tierline.workers.providers.instant import InstantProvider
from tierline.workers.providers.openai import OpenAIProvider
from tierline.workers.providers.sse import Event, iter_events
from tierline.workers.providers.wire import endpoint

CLIENT = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500)))


def url_called(provider: object) -> str:
    """The URL a provider built by ``provider_for`` with ``RECORDING`` posts to."""
    SEEN.clear()
    with pytest.raises(Rejected):
        provider.complete(CALL, timeout_s=1)  # type: ignore[attr-defined]
    return str(SEEN[0].url)


SEEN: list[httpx.Request] = []
RECORDING = httpx.Client(
    transport=httpx.MockTransport(lambda request: SEEN.append(request) or httpx.Response(401))  # type: ignore[func-returns-value]
)


def spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"usd_per_1m_input": 1, "usd_per_1m_output": 2, **fields})


# -- registry and provider_for ------------------------------------------------------------


def test_registry_maps_every_policy_provider_kind_to_a_class() -> None:
    assert sorted(PROVIDERS) == ["anthropic", "instant", "openai"]
    assert PROVIDERS["openai"] is OpenAIProvider
    assert PROVIDERS["anthropic"] is AnthropicProvider
    assert PROVIDERS["instant"] is InstantProvider


def test_base_url_comes_from_the_named_environment_variable_first() -> None:
    model = spec(base_url_env="SIM_URL", base_url="http://fallback:1")
    provider = provider_for(model, client=RECORDING, env={"SIM_URL": "http://sim:9"})
    assert isinstance(provider, OpenAIProvider)
    assert url_called(provider) == "http://sim:9/v1/chat/completions"


def test_base_url_falls_back_to_the_policy_value_when_the_variable_is_unset() -> None:
    model = spec(provider="anthropic", base_url_env="SIM_URL", base_url="http://fallback:1/v1/")
    provider = provider_for(model, client=RECORDING, env={})
    assert isinstance(provider, AnthropicProvider)
    assert url_called(provider) == "http://fallback:1/v1/messages"


def test_missing_base_url_is_a_policy_error_naming_the_variable() -> None:
    with pytest.raises(PolicyError, match="TIERLINE_SIM_URL") as caught:
        provider_for(spec(base_url_env="TIERLINE_SIM_URL"), client=CLIENT, env={}, model_key="nano")
    assert caught.value.key == "models.nano.base_url_env"


def test_missing_api_key_is_a_policy_error_naming_the_variable() -> None:
    model = spec(base_url="http://x", api_key_env="OPENAI_API_KEY")
    with pytest.raises(PolicyError, match="OPENAI_API_KEY"):
        provider_for(model, client=CLIENT, env={"OPENAI_API_KEY": ""})


def test_api_key_from_the_environment_is_sent() -> None:
    model = spec(provider="anthropic", base_url="http://x", api_key_env="ANTHROPIC_API_KEY")
    provider = provider_for(model, client=RECORDING, env={"ANTHROPIC_API_KEY": "ak-1"})
    url_called(provider)
    assert SEEN[0].headers["x-api-key"] == "ak-1"


def test_unknown_provider_kind_is_a_policy_error_listing_the_known_ones() -> None:
    with pytest.raises(PolicyError, match="known: anthropic, instant, openai"):
        provider_for(spec(provider="cohere", base_url="http://x"), client=CLIENT, env={})


def test_instant_provider_needs_no_endpoint() -> None:
    assert isinstance(
        provider_for(spec(provider="instant"), client=CLIENT, env={}), InstantProvider
    )


def test_providers_for_keys_each_provider_by_the_api_model_name() -> None:
    models = {
        "nano": spec(name="vendor-nano-2026", base_url_env="URL"),
        "judge": spec(provider="instant"),
    }
    providers = providers_for(models, client=CLIENT, env={"URL": "http://x"})
    assert sorted(providers) == ["judge", "vendor-nano-2026"]
    assert isinstance(providers["judge"], InstantProvider)


def test_providers_for_refuses_one_api_name_on_two_endpoints() -> None:
    models = {
        "a": spec(name="llama", base_url="http://one"),
        "b": spec(name="llama", base_url="http://two"),
    }
    with pytest.raises(PolicyError, match="two different endpoints"):
        providers_for(models, client=CLIENT, env={})


@pytest.mark.parametrize(
    "base_url, path, url",
    [
        ("http://h:1", "messages", "http://h:1/v1/messages"),
        ("http://h:1/", "messages", "http://h:1/v1/messages"),
        (
            "https://api.openai.com/v1",
            "chat/completions",
            "https://api.openai.com/v1/chat/completions",
        ),
        ("http://h/proxy/v1/", "chat/completions", "http://h/proxy/v1/chat/completions"),
    ],
)
def test_endpoint_accepts_base_urls_with_or_without_v1(base_url: str, path: str, url: str) -> None:
    assert endpoint(base_url, path) == url


# -- instant provider ---------------------------------------------------------------------

CALL = ModelCall(
    model="instant",
    messages=[
        {"role": "system", "content": "You classify support tickets."},
        {
            "role": "user",
            "content": "My parcel never arrived, where is my shipping?\n"
            "Labels: billing, shipping, returns",
        },
    ],
    max_output_tokens=16,
)  # fmt: skip


def test_instant_answers_a_classification_prompt_with_a_listed_label() -> None:
    completion = InstantProvider().complete(CALL, timeout_s=1)
    assert completion.text == "shipping" and completion.finish_reason == "stop"
    assert completion.tokens_in > 10 and completion.tokens_out == 2
    assert completion.usage_estimated is False


def test_instant_is_deterministic_and_picks_a_label_even_when_none_is_named() -> None:
    call = ModelCall(model="i", messages=[{"role": "user", "content": "Hmm.\nLabels: a, b or c"}],
                max_output_tokens=4)  # fmt: skip
    answers = {InstantProvider().complete(call, timeout_s=1).text for _ in range(5)}
    assert len(answers) == 1 and answers <= {"a", "b", "c"}


def test_instant_answers_other_prompts_with_bounded_deterministic_text() -> None:
    call = ModelCall(model="i", messages=[{"role": "user", "content": "Explain " * 50}],
                max_output_tokens=5)  # fmt: skip
    first = InstantProvider().complete(call, timeout_s=1)
    assert InstantProvider().complete(call, timeout_s=1).text == first.text
    assert len(first.text) <= 20 and first.finish_reason == "length"


def test_instant_stream_joins_back_to_the_answer() -> None:
    stream = InstantProvider().stream(CALL, timeout_s=1)
    assert "".join(stream) == stream.completion.text == "shipping"


def test_instant_respects_a_spent_budget() -> None:
    with pytest.raises(DeadlineExceeded):
        InstantProvider().complete(CALL, timeout_s=0)


# -- server-sent events -------------------------------------------------------------------

RAW = (
    b": comment\r\n"
    b'event: content_block_delta\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
    b"data: one\rdata:two\r\r"
    b"id: 7\nretry: 10\ndata: [DONE]\n\n"
)
EVENTS = [
    Event("content_block_delta", '{"a":\n1}'),
    Event("message", "one\ntwo"),
    Event("message", "[DONE]"),
]


def test_sse_joins_multi_line_data_and_keeps_event_names() -> None:
    assert list(iter_events([RAW])) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_sse_parses_the_same_events_however_the_bytes_are_chunked(size: int) -> None:
    chunks = [RAW[i : i + size] for i in range(0, len(RAW), size)]
    assert list(iter_events(chunks)) == EVENTS


def test_sse_dispatches_a_final_event_without_a_closing_blank_line() -> None:
    assert list(iter_events([b"data: x\n\ndata: [DONE]"])) == [
        Event("message", "x"),
        Event("message", "[DONE]"),
    ]
