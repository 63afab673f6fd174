"""Provider benchmarks against the simulator on this machine: per-call overhead of the
provider over a raw httpx loop, and the speed-up of a bundle's concurrent fan-out.

    python bench/providers.py [--calls 2000] [--rounds 10]

Prints a Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import httpx  # noqa: E402

from tierline.router.policy import load_policy  # noqa: E402
from tierline.workers.providers import Completion, ModelCall, provider_for, run_calls  # noqa: E402
from tierline.workers.providers.client import new_client  # noqa: E402
from tierline.workers.providers.instant import InstantProvider  # noqa: E402

# sim-nano answers at once (the server's own cost only); sim-frontier takes 200 ms.
SIM_CONFIG = """\
seed: 1
default: {ttft_s: 0.0, per_token_s: 0.0, jitter_s: 0.0, cold_start_s: 0.0}
models:
  sim-frontier: {ttft_s: 0.2}
"""
BUNDLE_SIZE = 64
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Is this review positive? Labels: positive, negative"},
]


@contextmanager
def simulator() -> Iterator[str]:
    """The simulator as a separate process on a free port; yields its URL."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        config.write(SIM_CONFIG)
    command = [sys.executable, "-m", "tierline.sim", "--policy", "policies/demo.yaml", "--port",
               "0",
               "--config", config.name]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=30)
        while "listening on " not in line:
            line = lines.get(timeout=30)
        yield line.rsplit("listening on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        os.unlink(config.name)


def timed(call: Callable[[], object], n: int) -> list[float]:
    """Per-call wall times of ``n`` sequential calls, in seconds."""
    times_s = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times_s.append(time.perf_counter() - started)
    return times_s


def overhead(url: str, calls: int, rounds: int) -> tuple[float, float]:
    """Median per-call seconds of (raw httpx loop, provider), interleaved A/B rounds."""
    client = new_client()
    spec = load_policy(ROOT / "policies" / "demo.yaml").models["sim-nano"]
    provider = provider_for(spec, client=client, env={"TIERLINE_SIM_URL": url})
    call = ModelCall(model="sim-nano", messages=MESSAGES, max_output_tokens=32)
    payload = {"model": "sim-nano", "messages": MESSAGES, "max_tokens": 32, "temperature": 0}
    endpoint = f"{url}/v1/chat/completions"

    def raw() -> str:
        response = client.post(endpoint, json=payload, timeout=5.0)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    def ours() -> Completion:
        return provider.complete(call, timeout_s=5.0)

    timed(raw, 200), timed(ours, 200)  # warm the connection, the sim and the caches
    raw_s: list[float] = []
    ours_s: list[float] = []
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        arms = [(raw_s, raw), (ours_s, ours)]
        for times_s, fn in arms if r % 2 == 0 else reversed(arms):
            times_s.extend(timed(fn, per_round))
    client.close()
    return statistics.median(raw_s), statistics.median(ours_s)


def bundle(url: str, repeats: int) -> tuple[float, float]:
    """Seconds for 64 × 200 ms calls: one after another, then through ``run_calls``."""
    client = new_client()
    spec = load_policy(ROOT / "policies" / "demo.yaml").models["sim-frontier"]
    provider = provider_for(spec, client=client, env={"TIERLINE_SIM_URL": url})
    calls = [
        ModelCall(model="sim-frontier", messages=MESSAGES, max_output_tokens=32, key=i)
        for i in range(BUNDLE_SIZE)
    ]
    providers = {"sim-frontier": provider}
    run_calls(calls, providers, max_concurrency=BUNDLE_SIZE, deadline_at=time.time() + 30)
    started = time.perf_counter()
    for call in calls:
        provider.complete(call, timeout_s=5.0)
    sequential_s = time.perf_counter() - started
    fanned_s = []
    for _ in range(repeats):
        started = time.perf_counter()
        outcomes = run_calls(
            calls, providers, max_concurrency=BUNDLE_SIZE, deadline_at=time.time() + 30
        )
        fanned_s.append(time.perf_counter() - started)
        assert all(isinstance(o, Completion) for o in outcomes), outcomes
    client.close()
    return sequential_s, statistics.median(fanned_s)


def instant_rate(n: int) -> float:
    """Calls per second of the in-process instant provider (tierline's floor cost)."""
    provider, call = (
        InstantProvider(),
        ModelCall(model="instant", messages=MESSAGES, max_output_tokens=32),
    )
    started = time.perf_counter()
    for _ in range(n):
        provider.complete(call, timeout_s=1.0)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per arm")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved A/B rounds")
    parser.add_argument("--repeats", type=int, default=5, help="run_calls repeats of the bundle")
    args = parser.parse_args()
    with simulator() as url:
        raw_s, ours_s = overhead(url, args.calls, args.rounds)
        sequential_s, fanned_s = bundle(url, args.repeats)
    rate = instant_rate(20_000)
    sample = f"{args.calls} calls, {args.rounds} interleaved rounds"
    command = " ".join(["python bench/providers.py", *sys.argv[1:]])
    print(f"""## Providers

`{command}` — {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()},
httpx {httpx.__version__}; simulator (`python -m tierline.sim`) on loopback in a separate process,
HTTP/1.1 keep-alive, one client with the worker's settings (`new_client()`).

| measure | value |
|---|---|
| raw httpx loop, median per call ({sample}) | {raw_s * 1e3:.3f} ms |
| provider `complete()`, median per call (same client, server, rounds) | {ours_s * 1e3:.3f} ms |
| provider / raw | {ours_s / raw_s:.3f} (goal ≤ 1.10) |
| bundle of {BUNDLE_SIZE} × 200 ms calls, sequential | {sequential_s:.2f} s |
| same bundle through `run_calls` (median of {args.repeats}) | {fanned_s:.3f} s |
| speed-up | {sequential_s / fanned_s:.1f}× |
| instant provider, in-process | {rate:,.0f} calls/s |
""")


if __name__ == "__main__":
    main()
