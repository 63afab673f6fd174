"""Replay mode: recorded responses and token counts, never invented answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tierline.sim.fleet import fleet_for_models
from tierline.sim.replay import load_replay
from tierline.sim.server import start

ITEMS = [
    {
        "id": "t/1",
        "prompt": "What is 2+2? ",
        "grader": {"kind": "recorded"},
        "outcomes": {
            "small-model": {
                "response": "4",
                "score": 1.0,
                "prompt_tokens": 7,
                "completion_tokens": 1,
            },
            "big-model": {
                "response": "The answer is 4.",
                "score": 1.0,
                "prompt_tokens": 7,
                "completion_tokens": 6,
            },
        },
    },
    {
        "id": "t/2",
        "prompt": "Name a prime.",
        "grader": {"kind": "recorded"},
        "outcomes": {
            "big-model": {
                "response": "Seven is prime.",
                "score": 1.0,
                "prompt_tokens": 4,
                "completion_tokens": 4,
            }
        },
    },
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    return path


def ask(url: str, model: str, text: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=10,
        json={"model": model, "messages": [{"role": "user", "content": text}], **extra},
    )


def test_replay_serves_recorded_response_and_usage(dataset: Path) -> None:
    index = load_replay(dataset)
    assert index.models == ("small-model", "big-model")
    with start(fleet_for_models(index.models), replay=index) as sim:
        body = ask(sim.url, "big-model", "What is 2+2? ").json()
        assert body["choices"][0]["message"]["content"] == "The answer is 4."
        assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
        stripped = ask(sim.url, "small-model", "What is 2+2?").json()  # stripped text matches
        assert stripped["choices"][0]["message"]["content"] == "4"
        cut = ask(sim.url, "big-model", "Name a prime.", max_tokens=2).json()
        assert cut["choices"][0]["finish_reason"] == "length"
        assert cut["usage"]["completion_tokens"] == 2
        assert "Seven is prime.".startswith(cut["choices"][0]["message"]["content"])


def test_replay_never_invents_an_answer(dataset: Path) -> None:
    index = load_replay(dataset)
    with start(fleet_for_models(index.models), replay=index) as sim:
        missing = ask(sim.url, "small-model", "Name a prime.")
        assert missing.status_code == 404
        assert (
            "no recorded response of small-model to this prompt"
            in missing.json()["error"]["message"]
        )
        assert ask(sim.url, "big-model", "Never asked").status_code == 404
        assert ask(sim.url, "sim-nano", "What is 2+2? ").status_code == 404


def test_replay_of_real_mmlu_pro_item_over_a_process(
    data_dir: Path, spawn_sim: Callable[..., str]
) -> None:
    path = data_dir / "routing" / "mmlu-pro" / "train.jsonl"
    if not path.exists():
        pytest.skip(f"no data at {path}")
    with path.open(encoding="utf-8") as fh:
        item = json.loads(fh.readline())
    url = spawn_sim("--replay", path)
    for model, outcome in item["outcomes"].items():
        resp = httpx.post(
            f"{url}/v1/messages",
            timeout=30,
            json={
                "model": model,
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": item["prompt"]}],
            },
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["content"][0]["text"] == outcome["response"]
        assert body["usage"] == {
            "input_tokens": outcome["prompt_tokens"],
            "output_tokens": outcome["completion_tokens"],
        }


def test_loading_mmlu_pro_takes_seconds(data_dir: Path) -> None:
    path = data_dir / "routing" / "mmlu-pro" / "train.jsonl"
    if not path.exists():
        pytest.skip(f"no data at {path}")
    start_s = time.perf_counter()
    index = load_replay(path)
    elapsed = time.perf_counter() - start_s
    assert len(index.models) == 5
    assert elapsed < 5.0
