"""Per-model behaviour: rate limits, injected failures, cold starts, latency, concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def chat(client: httpx.Client | Any, url: str, model: str, text: str = "hello") -> httpx.Response:
    return client.post(
        f"{url}/v1/chat/completions",
        timeout=10,
        json={"model": model, "messages": [{"role": "user", "content": text}]},
    )


def test_rpm_limit_answers_429_with_retry_after(sim_url: str) -> None:
    statuses = [chat(httpx, sim_url, "sim-limited", f"q{i}") for i in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "2"
    assert statuses[1].headers["x-ratelimit-remaining-requests"] == "0"
    limited = statuses[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert "requests per minute" in limited.json()["error"]["message"]
    assert chat(httpx, sim_url, "sim-nano").status_code == 200  # limits are per model


def test_error_rate_one_always_fails_with_5xx(sim_url: str) -> None:
    codes = {chat(httpx, sim_url, "sim-broken", f"q{i}").status_code for i in range(8)}
    assert codes <= {500, 503} and codes
    anthropic = httpx.post(
        f"{sim_url}/v1/messages",
        timeout=10,
        json={
            "model": "sim-broken",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert anthropic.status_code in (500, 503)
    assert anthropic.json()["error"]["type"] in ("api_error", "overloaded_error")


def test_cold_start_delays_the_first_call_after_idling(sim_url: str) -> None:
    def timed() -> float:
        start = time.perf_counter()
        assert chat(httpx, sim_url, "sim-cold").status_code == 200
        return time.perf_counter() - start

    cold, warm = timed(), timed()
    time.sleep(0.7)  # longer than idle_before_cold_s
    again = timed()
    assert cold >= 0.4 and again >= 0.4
    assert warm < 0.3


def test_64_concurrent_slow_calls_overlap(sim_url: str) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=64)) as client:
        chat(client, sim_url, "sim-slow")  # the connection pool warms up once
        start = time.perf_counter()
        with ThreadPoolExecutor(64) as pool:
            codes = list(
                pool.map(
                    lambda i: chat(client, sim_url, "sim-slow", f"q{i}").status_code, range(64)
                )
            )
        elapsed = time.perf_counter() - start
    assert codes == [200] * 64
    assert 0.2 <= elapsed < 1.0


def test_time_to_first_token_is_honoured(sim_url: str) -> None:
    start = time.perf_counter()
    assert chat(httpx, sim_url, "sim-slow").status_code == 200
    assert time.perf_counter() - start >= 0.2
