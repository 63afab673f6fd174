"""The Anthropic Messages endpoint over real sockets, against a simulator process."""

from __future__ import annotations

import json
from typing import Any

import httpx

HEADERS = {"x-api-key": "sim", "anthropic-version": "2023-06-01"}


def message(url: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "Compare renting and buying."}])
    body.setdefault("max_tokens", 256)
    return httpx.post(f"{url}/v1/messages", json=body, headers=HEADERS, timeout=10)


def test_message_has_anthropic_shape_and_usage(sim_url: str) -> None:
    resp = message(sim_url, model="sim-frontier", system="You are terse.")
    assert resp.status_code == 200
    body = resp.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"].startswith("msg_") and body["model"] == "sim-frontier"
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]
    assert body["stop_reason"] == "end_turn"
    chars = len("You are terse.") + len("Compare renting and buying.")
    assert body["usage"] == {
        "input_tokens": (chars + 3) // 4,
        "output_tokens": body["usage"]["output_tokens"],
    }
    assert body["usage"]["output_tokens"] > 0


def test_max_tokens_truncates_with_stop_reason_max_tokens(sim_url: str) -> None:
    body = message(sim_url, model="sim-nano", max_tokens=2).json()
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 2


def test_stream_sends_the_messages_event_sequence(sim_url: str) -> None:
    body = {
        "model": "sim-mid",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
    }
    with httpx.stream(
        "POST", f"{sim_url}/v1/messages", json=body, headers=HEADERS, timeout=10
    ) as resp:
        assert resp.status_code == 200
        lines = [line for line in resp.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert events[:2] == ["message_start", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert [d["type"] for d in data] == events
    deltas = [d["delta"]["text"] for d in data if d["type"] == "content_block_delta"]
    final = data[-2]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] == len(deltas) > 0
    assert data[0]["message"]["usage"]["input_tokens"] == 2
    plain = message(sim_url, model="sim-mid", max_tokens=100, messages=body["messages"]).json()
    assert "".join(deltas) == plain["content"][0]["text"]


def test_errors_use_the_anthropic_error_shape(sim_url: str) -> None:
    unknown = message(sim_url, model="claude-nonexistent")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "error"
    assert unknown.json()["error"]["type"] == "not_found_error"
    no_max = httpx.post(
        f"{sim_url}/v1/messages",
        headers=HEADERS,
        timeout=10,
        json={"model": "sim-nano", "messages": [{"role": "user", "content": "x"}]},
    )
    assert no_max.status_code == 400
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
