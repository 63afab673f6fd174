"""Early stop in the providers, against the simulator over real HTTP: an unsure stream is
cut short and paid for what it generated; a sure one runs to its end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tierline.router.live.early_stop import EARLY_STOP, EarlyStop
from tierline.router.policy import ModelSpec
from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.server import start
from tierline.workers.providers import (
    Completion,
    ModelCall,
    Provider,
    provider_for,
    run_calls,
    shared_client,
)

QUICK = {"ttft_s": 0.0, "per_token_s": 0.0, "jitter_s": 0.0, "cold_start_s": 0.0}
# sim-unsure gets every answer wrong (low logprobs), sim-sure every answer right.
FLEET = Fleet({"sim-unsure": ModelProfile(**QUICK, accuracy=0.0, answer_tokens=64),
               "sim-sure": ModelProfile(**QUICK, accuracy=1.0, answer_tokens=64)}, seed=2)
RULE = EarlyStop(min_tokens=8, window=4, min_mean_logprob=-1.0)
PROMPT = "Explain how a hash map handles collisions, with an example. " * 8
MAX_OUTPUT_TOKENS = 64


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with start(FLEET, port=0) as sim:
        yield sim.url


def _provider(url: str, kind: str = "openai") -> Provider:
    spec = ModelSpec(provider=kind, base_url=url, usd_per_1m_input=1, usd_per_1m_output=1)
    return provider_for(spec, client=shared_client(), env={})


def _call(model: str, rule: EarlyStop | None = RULE) -> ModelCall:
    return ModelCall(model=model, messages=[{"role": "user", "content": PROMPT}],
                max_output_tokens=MAX_OUTPUT_TOKENS, early_stop=rule)


def test_an_unsure_generation_is_stopped_early_and_paid_for_what_it_generated(
        sim_url: str) -> None:
    whole = _provider(sim_url).complete(_call("sim-unsure", rule=None), timeout_s=5)
    cut = _provider(sim_url).complete(_call("sim-unsure"), timeout_s=5)
    assert whole.finish_reason in ("stop", "length") and whole.tokens_out > 2 * RULE.min_tokens
    assert cut.finish_reason == EARLY_STOP
    assert cut.tokens_out == RULE.min_tokens < MAX_OUTPUT_TOKENS  # every token is unsure
    assert whole.text.startswith(cut.text) and len(cut.text) < len(whole.text)
    assert cut.usage_estimated  # the server's usage comes only at the end of a stream


def test_a_sure_generation_runs_to_its_end(sim_url: str) -> None:
    whole = _provider(sim_url).complete(_call("sim-sure", rule=None), timeout_s=5)
    watched = _provider(sim_url).complete(_call("sim-sure"), timeout_s=5)
    assert watched.finish_reason == whole.finish_reason != EARLY_STOP
    assert (watched.text, watched.tokens_out) == (whole.text, whole.tokens_out)
    assert watched.usage_estimated is False


def test_a_stream_read_by_the_caller_ends_at_the_stop(sim_url: str) -> None:
    with _provider(sim_url).stream(_call("sim-unsure"), timeout_s=5) as stream:
        deltas = list(stream)
    assert len(deltas) == RULE.min_tokens
    assert stream.completion.finish_reason == EARLY_STOP


def _calls_served(url: str, model: str) -> int:
    return int(httpx.get(f"{url}/sim/stats", timeout=5).json()[model]["calls"])


def test_an_early_stop_is_an_answer_not_a_failure_to_retry(sim_url: str) -> None:
    before = _calls_served(sim_url, "sim-unsure")
    [outcome] = run_calls([_call("sim-unsure")], {"sim-unsure": _provider(sim_url)},
                          max_concurrency=1, deadline_at=time.time() + 10)
    assert isinstance(outcome, Completion) and outcome.finish_reason == EARLY_STOP
    assert _calls_served(sim_url, "sim-unsure") == before + 1


def test_anthropic_has_no_logprobs_so_the_rule_does_not_apply(sim_url: str) -> None:
    answer = _provider(sim_url, "anthropic").complete(_call("sim-unsure"), timeout_s=5)
    assert answer.finish_reason != EARLY_STOP and answer.tokens_out > RULE.min_tokens
