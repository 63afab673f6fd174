"""Providers over real sockets against the simulator, run as a separate process."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tierline.router.errors import RateLimited, Rejected, Unavailable
from tierline.router.policy import load_policy
from tierline.workers.providers import (
    Completion,
    ModelCall,
    Provider,
    provider_for,
    run_calls,
    shared_client,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "policies" / "demo.yaml")
# sim-nano answers at once, sim-frontier takes 200 ms, sim-mid allows one request a minute.
SIM_CONFIG = """\
seed: 1
default: {ttft_s: 0.0, per_token_s: 0.0, jitter_s: 0.0, cold_start_s: 0.0}
models:
  sim-frontier: {ttft_s: 0.2}
  sim-mid: {rpm: 1}
"""


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator process on a free loopback port; its URL."""
    config = tmp_path_factory.mktemp("sim") / "sim.yaml"
    config.write_text(SIM_CONFIG)
    command = [sys.executable, "-m", "tierline.sim", "--policy", "policies/demo.yaml", "--port",
               "0",
               "--config", str(config)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = _wait_for_url(lines, timeout_s=20)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_url(lines: queue.Queue[str], *, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if "listening on " in line:
            return line.rsplit("listening on ", 1)[1].strip()
    raise AssertionError("the simulator did not start within 20 s")


def sim_provider(url: str, model: str, kind: str = "openai") -> Provider:
    spec = POLICY.models[model].model_copy(update={"provider": kind})
    return provider_for(spec, client=shared_client(), env={"TIERLINE_SIM_URL": url})


def ask(model: str, text: str = "Is this review positive? Labels: positive, negative") -> ModelCall:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]
    return ModelCall(model=model, messages=messages, max_output_tokens=64, key=text)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_complete_over_a_real_socket(sim_url: str, kind: str) -> None:
    completion = sim_provider(sim_url, "sim-nano", kind).complete(ask("sim-nano"), timeout_s=5)
    assert completion.text and completion.finish_reason in ("stop", "length")
    assert completion.usage_estimated is False
    assert completion.tokens_in > 0 and completion.tokens_out > 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_stream_over_a_real_socket(sim_url: str, kind: str) -> None:
    stream = sim_provider(sim_url, "sim-nano", kind).stream(ask("sim-nano"), timeout_s=5)
    deltas = list(stream)
    completion = stream.completion
    assert len(deltas) > 1 and "".join(deltas) == completion.text
    assert completion.usage_estimated is False and completion.tokens_out > 0


def test_sixty_four_calls_of_200_ms_finish_well_under_a_second(sim_url: str) -> None:
    provider = sim_provider(sim_url, "sim-frontier")
    calls = [ask("sim-frontier", f"question {i}") for i in range(64)]
    run_calls(
        calls[:4], {"sim-frontier": provider}, max_concurrency=64, deadline_at=time.time() + 5
    )
    started = time.monotonic()
    outcomes = run_calls(
        calls, {"sim-frontier": provider}, max_concurrency=64, deadline_at=time.time() + 10
    )
    elapsed_s = time.monotonic() - started
    assert all(isinstance(o, Completion) for o in outcomes), outcomes
    assert [o.latency_s >= 0.19 for o in outcomes if isinstance(o, Completion)] == [True] * 64
    assert elapsed_s < 1.0, f"64 × 200 ms took {elapsed_s:.2f} s"


def test_timeout_from_a_short_budget_is_unavailable_quickly(sim_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable, match="timed out"):
        sim_provider(sim_url, "sim-frontier").complete(ask("sim-frontier"), timeout_s=0.05)
    assert time.monotonic() - started < 0.15


def test_rate_limit_from_the_server_carries_its_retry_after(sim_url: str) -> None:
    provider = sim_provider(sim_url, "sim-mid")
    with pytest.raises(RateLimited) as caught:
        for _ in range(3):
            provider.complete(ask("sim-mid"), timeout_s=5)
    assert 0 < caught.value.retry_after_s <= 60


def test_unknown_model_is_rejected_with_the_servers_reason(sim_url: str) -> None:
    provider = sim_provider(sim_url, "sim-nano")
    with pytest.raises(Rejected, match="sim-nope"):
        provider.complete(ask("sim-nope"), timeout_s=5)


def test_calls_in_a_process_share_one_client_and_one_connection(sim_url: str) -> None:
    client = shared_client()
    assert shared_client() is client
    provider = sim_provider(sim_url, "sim-nano")
    peers: list[object] = []

    def record(response: httpx.Response) -> None:
        peers.append(response.extensions["network_stream"].get_extra_info("client_addr"))

    client.event_hooks["response"].append(record)
    try:
        for _ in range(10):
            provider.complete(ask("sim-nano"), timeout_s=5)
    finally:
        client.event_hooks["response"].remove(record)
    assert len(peers) == 10 and len(set(peers)) == 1  # keep-alive: one socket for all


def test_a_forked_child_gets_its_own_client() -> None:
    parent = shared_client()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child = shared_client()
        os._exit(0 if child is not parent and shared_client() is child else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shared_client() is parent
