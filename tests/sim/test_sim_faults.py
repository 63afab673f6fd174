"""The fault suite's levers on the simulator: a 429 burst with a long Retry-After on demand,
and a count of served calls (what a provider bills) to hold the ledger against."""

from __future__ import annotations

import time

import httpx

from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.server import start

FLEET = Fleet({"sim-a": ModelProfile(cold_start_s=0, ttft_s=0, jitter_s=0, per_token_s=0),
               "sim-b": ModelProfile(cold_start_s=0, ttft_s=0, jitter_s=0, per_token_s=0,
                                     error_rate=1.0)})


def _ask(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=5, json={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})


def test_a_burst_answers_429_with_its_retry_after_then_ends() -> None:
    with start(FLEET) as sim:
        assert httpx.post(f"{sim.url}/sim/burst", json={"seconds": 0.5, "retry_after_s": 12},
                          timeout=5).status_code == 200
        limited = _ask(sim.url, "sim-a")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "12")
        time.sleep(0.6)
        assert _ask(sim.url, "sim-a").status_code == 200
        stats = httpx.get(f"{sim.url}/sim/stats", timeout=5).json()
        assert (stats["sim-a"]["rate_limited"], stats["sim-a"]["served"]) == (1, 1)


def test_served_counts_answered_calls_only() -> None:
    with start(FLEET) as sim:
        for _ in range(3):
            _ask(sim.url, "sim-a")
            _ask(sim.url, "sim-b")
        stats = httpx.get(f"{sim.url}/sim/stats", timeout=5).json()
        assert (stats["sim-a"]["served"], stats["sim-b"]["served"]) == (3, 0)
        assert stats["sim-b"]["failed"] == 3


def test_a_bad_burst_request_is_a_400() -> None:
    with start(FLEET) as sim:
        for body in (b"[", b"{}", b'{"seconds": -1, "retry_after_s": 5}', b"[" * 100_000):
            reply = httpx.post(f"{sim.url}/sim/burst", content=body, timeout=5)
            assert reply.status_code == 400, body[:20]


def test_served_calls_are_counted_per_prompt_when_asked() -> None:
    from tierline.sim.engine import prompt_digest

    counting = Fleet(FLEET.models, count_prompts=True)
    with start(counting) as sim:
        for _ in range(2):
            _ask(sim.url, "sim-a")
        _ask(sim.url, "sim-b")  # fails: not served
        by_prompt = httpx.get(f"{sim.url}/sim/served-by-prompt", timeout=5).json()
    assert by_prompt == {"sim-a": {prompt_digest([("user", "hi")]): 2}}
    with start(FLEET) as sim:
        _ask(sim.url, "sim-a")
        assert httpx.get(f"{sim.url}/sim/served-by-prompt", timeout=5).json() == {}
