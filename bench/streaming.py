"""Realtime answers streamed through the HTTP gateway: when the first words arrive, against
when the whole answer does, side by side.

    python bench/streaming.py --calls 30

One fresh Postgres database, Redis database 12 (flushed), the simulator (policies/demo.yaml,
``kind: single``) slowed to ``--per-token-ms`` per generated token, one ``tierline worker
--role all`` and one gateway, all separate processes, so the text goes from the worker to the
gateway through Redis as it would across hosts. Calls alternate between ``"stream": true``
(timed to the first piece of text, and to the end of the stream) and ``"stream": false``
(timed to the answer), one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from gateway_latency import fresh_database, gateway_url

from tierline.bench.children import sim_url, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "demo.yaml"
REDIS_URL = "redis://127.0.0.1:6379/12"  # this bench's own database: flushed per run


def streamed(http: httpx.Client, url: str, prompt: str) -> tuple[float, float, int]:
    """(seconds to the first piece of text, seconds to the end, pieces) of one streamed call."""
    body = {"model": "auto", "stream": True,
            "messages": [{"role": "user", "content": prompt}]}
    started, first, pieces = time.perf_counter(), None, 0
    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line.removeprefix("data: "))
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                pieces += 1
                first = first if first is not None else time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, pieces


def whole(http: httpx.Client, url: str, prompt: str) -> float:
    """Seconds to the answer of one call that does not stream."""
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    started = time.perf_counter()
    http.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="measured calls of each kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--per-token-ms", type=float, default=20.0,
                        help="the simulated models' time per generated token")
    args = parser.parse_args()

    redis.Redis.from_url(REDIS_URL).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="streaming-"))
    config = logs / "sim.yaml"
    config.write_text(json.dumps({"default": {"per_token_s": args.per_token_ms / 1000,
                                              "jitter_s": 0.0, "error_rate": 0.0}}))
    children: list[subprocess.Popen[bytes]] = []
    with fresh_database() as database_url:
        env = {**os.environ, "TIERLINE_BROKER_URL": REDIS_URL,
               "TIERLINE_DATABASE_URL": database_url, "TIERLINE_POLICY": str(POLICY),
               "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True,
                       cwd=ROOT, env=env, capture_output=True)
        try:
            sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--config",
                         str(config), "--port", "0"], env, logs / "sim.log", cwd=ROOT)
            children.append(sim)
            env["TIERLINE_SIM_URL"] = sim_url(logs / "sim.log", sim)
            children.append(spawn(
                [sys.executable, "-m", "tierline", "worker", "--role", "all", "--",
                 "--without-mingle", "--without-gossip", "-n", "stream-bench@%h"],
                env, logs / "worker.log", cwd=ROOT))
            gateway = spawn([sys.executable, "-m", "tierline", "gateway", "--port", "0"],
                            env, logs / "gateway.log", cwd=ROOT)
            children.append(gateway)
            url = gateway_url(logs / "gateway.log", gateway)
            firsts, ends, wholes, pieces = [], [], [], []
            with httpx.Client(timeout=60) as http:
                for i in range(args.warmup + args.calls):
                    prompt = f"Write a few sentences about harbour {i}."
                    first, end, n = streamed(http, url, prompt + " (streamed)")
                    answered = whole(http, url, prompt + " (whole)")
                    if i >= args.warmup:
                        firsts.append(first)
                        ends.append(end)
                        wholes.append(answered)
                        pieces.append(n)
                    print(f"\r{i + 1}/{args.warmup + args.calls}", end="", file=sys.stderr)
            print(file=sys.stderr)
            print(f"| {args.per_token_ms:g} ms per token, {args.calls} calls of each | median ms "
                  "| p90 ms |")
            print("|---|---|---|")
            for name, seconds in (("streamed: first piece of text", firsts),
                                  ("streamed: end of the stream", ends),
                                  ("not streamed: the answer", wholes)):
                ms = sorted(s * 1000 for s in seconds)
                print(f"| {name} | {statistics.median(ms):.0f} | "
                      f"{ms[int(0.9 * (len(ms) - 1))]:.0f} |")
            print(f"pieces per streamed answer: median {statistics.median(pieces):g}; "
                  f"first piece at {statistics.median(firsts) / statistics.median(wholes):.0%} "
                  "of the whole answer's time")
        finally:
            for child in children:
                stop(child)


if __name__ == "__main__":
    main()
