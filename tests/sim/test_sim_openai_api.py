"""The OpenAI-compatible endpoint over real sockets, against a simulator process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def chat(url: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "Explain how a hash map works."}])
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)


def test_chat_completion_has_openai_shape_and_usage(sim_url: str) -> None:
    resp = chat(sim_url, model="sim-nano")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion" and body["id"] and body["created"] > 0
    assert body["model"] == "sim-nano"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == len("Explain how a hash map works.") // 4 + 1
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_truncates_with_finish_reason_length(sim_url: str) -> None:
    body = chat(sim_url, model="sim-frontier", max_tokens=3).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    newer = chat(sim_url, model="sim-frontier", max_completion_tokens=2).json()
    assert newer["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["message"]["content"].startswith(
        newer["choices"][0]["message"]["content"]
    )


def test_stream_sends_chunks_then_usage_then_done(sim_url: str) -> None:
    body = {
        "model": "sim-mid",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Tell me about tiers of models."}],
    }
    with httpx.stream("POST", f"{sim_url}/v1/chat/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["completion_tokens"] > 0
    plain = chat(sim_url, model="sim-mid", messages=body["messages"]).json()
    assert text == plain["choices"][0]["message"]["content"]
    assert usage == plain["usage"]


def test_unknown_model_is_404_in_openai_error_shape(sim_url: str) -> None:
    resp = chat(sim_url, model="gpt-nonexistent")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert "gpt-nonexistent" in error["message"] and error["code"] == "model_not_found"


def test_bad_json_and_missing_fields_are_400(sim_url: str) -> None:
    bad = httpx.post(f"{sim_url}/v1/chat/completions", content=b"{nope", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert chat(sim_url, model="sim-nano", messages=[]).status_code == 400
    missing = httpx.post(f"{sim_url}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"


def test_models_and_health_list_the_fleet(sim_url: str) -> None:
    models = httpx.get(f"{sim_url}/v1/models", timeout=10).json()
    names = [m["id"] for m in models["data"]]
    assert names[:2] == ["sim-nano", "sim-mid"] and "sim-frontier" in names
    health = httpx.get(f"{sim_url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["mode"] == "synthetic"


def test_same_seed_gives_same_answers_across_processes(
    spawn_sim: Callable[..., str], sim_files: tuple[Path, Path]
) -> None:
    policy, config = sim_files
    prompts = ["What is a cascade router?", "Summarise the quarterly report in 3 points."]
    runs = []
    for seed in ("5", "5", "6"):
        url = spawn_sim("--policy", policy, "--config", config, "--seed", seed)
        runs.append(
            [
                chat(url, model="sim-mid", messages=[{"role": "user", "content": p}]).json()[
                    "choices"
                ][0]["message"]["content"]
                for p in prompts
            ]
        )
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
