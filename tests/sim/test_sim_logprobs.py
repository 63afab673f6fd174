"""Per-token logprobs on synthetic streams: near 0 for answers the model gets right, very
negative for the ones it gets wrong; none in replay mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tierline.sim.fleet import Fleet, ModelProfile, fleet_for_models
from tierline.sim.replay import load_replay
from tierline.sim.server import start

QUICK = {"ttft_s": 0.0, "per_token_s": 0.0, "jitter_s": 0.0, "cold_start_s": 0.0}
# One model that gets every answer wrong, one that gets every answer right.
FLEET = Fleet({"sim-wrong": ModelProfile(**QUICK, accuracy=0.0),
               "sim-right": ModelProfile(**QUICK, accuracy=1.0)}, seed=5)
PROMPT = "Explain how a hash map handles collisions, with an example. " * 4


def _stream(url: str, model: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}],
            **extra}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200, resp.read()
        lines = [line.removeprefix("data: ") for line in resp.iter_lines() if line]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _token_logprobs(chunks: list[dict[str, Any]]) -> list[float]:
    """Each content chunk's logprobs, in order; every content chunk must carry one."""
    out = []
    for chunk in chunks:
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            tokens = choice["logprobs"]["content"]
            assert [t["token"] for t in tokens] == [choice["delta"]["content"]]
            out += [t["logprob"] for t in tokens]
    return out


@pytest.fixture(scope="module")
def url() -> Any:
    with start(FLEET, port=0) as sim:
        yield sim.url


def test_a_wrong_answer_streams_low_logprobs_and_a_right_one_high(url: str) -> None:
    wrong = _token_logprobs(_stream(url, "sim-wrong", logprobs=True))
    right = _token_logprobs(_stream(url, "sim-right", logprobs=True))
    assert len(wrong) > 16 and len(right) > 16
    assert all(-4.5 <= lp <= -1.5 for lp in wrong), wrong
    assert all(-0.4 <= lp <= 0.0 for lp in right), right


def test_logprobs_are_the_same_on_every_run(url: str) -> None:
    first = _token_logprobs(_stream(url, "sim-wrong", logprobs=True, max_tokens=8))
    again = _token_logprobs(_stream(url, "sim-wrong", logprobs=True))
    assert len(first) == 8 and again[:8] == first  # a max_tokens cut keeps the same prefix


def test_streams_not_asking_for_logprobs_carry_none(url: str) -> None:
    chunks = _stream(url, "sim-wrong")
    assert all("logprobs" not in c["choices"][0] for c in chunks if c["choices"])


def test_a_non_boolean_logprobs_is_a_bad_request(url: str) -> None:
    body = {"model": "sim-right", "logprobs": "yes",
            "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "logprobs"


def test_replay_has_no_logprobs_to_give(tmp_path: Path) -> None:
    item = {"id": "t/1", "prompt": PROMPT, "grader": {"kind": "recorded"},
            "outcomes": {"rec": {"response": "Chaining, or open addressing.", "score": 1.0,
                                 "prompt_tokens": 9, "completion_tokens": 5}}}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(item) + "\n")
    index = load_replay(path)
    with start(fleet_for_models(index.models), replay=index) as sim:
        chunks = _stream(sim.url, "rec", logprobs=True)
    content = [c["choices"][0] for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(content) == 5 and all(choice["logprobs"] is None for choice in content)
