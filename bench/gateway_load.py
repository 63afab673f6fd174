"""Realtime chat through the gateway under load, on the distributed stack, against the
simulator called directly in the same run.

    python bench/gateway_load.py --seconds 10 --clients 1,8,32,128 --batch 50000

One fresh Postgres database, Redis database 12 (flushed; ``--redis-url`` for another), the
simulator (policies/demo.yaml, every model answering in about ``--model-ms``), separate
worker processes (the realtime router, the realtime tier, and one worker for the standard
and batch lanes) and two gateways, all started here: one sends its realtime bundles to the
tier's queue, the other answers them in its own process (``TIERLINE_GATEWAY_CALLS=inline``).
For each number of concurrent clients (each one keep-alive connection, asking one question
after another for ``--seconds``): latency percentiles, requests/s and errors, first straight
to the simulator (the reference: what the model costs), then through the gateway, with the
CPU seconds each process spent per request (from /proc, children included). Then a
``--batch``-request job is submitted on the batch lane and the realtime runs are repeated
while it is processed (by its own worker, at ``--batch-nice``: on a shared 2-core machine
the batch lane's pool yields the CPU to the realtime one, as a deployment would pin it to
its own cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from gateway_latency import fresh_database, gateway_url

from tierline.bench.children import sim_url, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "demo.yaml"
# The bench's own database, flushed per run (TIERLINE_BENCH_REDIS_URL or --redis-url for another).
REDIS_URL = os.environ.get("TIERLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


async def load(url: str, body: dict[str, Any], clients: int, seconds: float
               ) -> tuple[list[float], int, float]:
    """``clients`` loops posting ``body`` for ``seconds``: (latencies s, errors, elapsed s)."""
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        end = time.perf_counter() + seconds

        async def one(number: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < end:
                i += 1
                question = body | {"messages": [{"role": "user",
                                                 "content": f"What is {number} + {i}?"}]}
                started = time.perf_counter()
                try:
                    response = await http.post(url, json=question)
                    ok = response.status_code == 200
                    if not ok:
                        samples.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    samples.append(repr(exc))
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(clients)))
        if samples:
            print(f"{len(samples)} errors, e.g. {samples[0]}", file=sys.stderr)
        return latencies, errors, time.perf_counter() - started


def pct(ms: list[float], q: float) -> float:
    return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")


def row(name: str, clients: int, latencies: list[float], errors: int, elapsed: float,
        cpu: dict[str, float] | None) -> str:
    ms = sorted(s * 1000 for s in latencies) or [float("nan")]
    n = len(latencies)
    per = (" | " + " | ".join(f"{c / max(n, 1) * 1000:.1f}" for c in cpu.values())
           if cpu else "")
    return (f"| {name} | {clients} | {n} | {n / elapsed:.0f} | {statistics.median(ms):.1f} | "
            f"{pct(ms, 0.95):.1f} | {pct(ms, 0.99):.1f} | {errors}{per} |")


def run(url: str, body: dict[str, Any], clients: int, seconds: float
        ) -> tuple[list[float], int, float]:
    asyncio.run(load(url, body, min(clients, 4), 1.0))  # warm connections and caches
    return asyncio.run(load(url, body, clients, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--batch", type=int, default=50_000,
                        help="requests in the batch job of the last runs (0: none)")
    parser.add_argument("--batch-clients", default="1,32")
    parser.add_argument("--model-ms", type=float, default=10.0)
    parser.add_argument("--batch-nice", type=int, default=10,
                        help="CPU niceness of the standard/batch worker (0: none)")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of an earlier tree whose gateway is measured too, "
                             "side by side (git archive <commit> | tar -x -C DIR)")
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="the broker's Redis database, flushed first (default %(default)s)")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    redis.Redis.from_url(args.redis_url).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    config = logs / "sim.yaml"
    config.write_text(json.dumps({"default": {
        "ttft_s": args.model_ms / 1000, "per_token_s": 0.0, "jitter_s": 0.0,
        "cold_start_s": 0.0, "error_rate": 0.0}}))
    children: dict[str, subprocess.Popen[bytes]] = {}
    with fresh_database() as database_url:
        env = {**os.environ, "TIERLINE_BROKER_URL": args.redis_url,
               "TIERLINE_DATABASE_URL": database_url, "TIERLINE_POLICY": str(POLICY),
               "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True,
                       cwd=ROOT, env=env, capture_output=True)
        try:
            children["sim"] = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY),
                                     "--config", str(config), "--port", "0"],
                                    env, logs / "sim.log", cwd=ROOT)
            env["TIERLINE_SIM_URL"] = sim = sim_url(logs / "sim.log", children["sim"])
            for name, argv in (("router", ["--role", "router", "--lane", "realtime"]),
                               ("tier", ["--role", "tier", "--lane", "realtime"]),
                               ("batch", ["--role", "all", "--lane", "standard", "--lane",
                                          "batch", "-c", "1"])):
                nice = (["nice", "-n", str(args.batch_nice)]
                        if name == "batch" and args.batch_nice else [])
                children[name] = spawn(
                    [*nice, sys.executable, "-m", "tierline", "worker", *argv, "--",
                     "--without-mingle", "--without-gossip", "-n", f"{name}-load@%h"],
                    env, logs / f"{name}.log", cwd=ROOT)
            gateways: dict[str, tuple[str, str]] = {}
            for name, calls in (("gateway", "queue"), ("inline", "inline")):
                children[name] = spawn([sys.executable, "-m", "tierline", "gateway",
                                        "--port", "0"], {**env, "TIERLINE_GATEWAY_CALLS": calls},
                                       logs / f"{name}.log", cwd=ROOT)
                label = "gateway" if calls == "queue" else "gateway, inline calls"
                gateways[label] = (name, gateway_url(logs / f"{name}.log", children[name]))
            if args.before:
                tree = args.before.resolve()
                children["before"] = spawn(
                    [sys.executable, "-m", "tierline", "gateway", "--port", "0"],
                    {**env, "PYTHONPATH": str(tree)}, logs / "before.log", cwd=tree)
                gateways["gateway (before)"] = ("before", gateway_url(logs / "before.log",
                                                                      children["before"]))
            time.sleep(3)  # the workers connect to the broker
            measured = ["sim", "router", "tier", "gateway"]
            header = ("| path | clients | answers | requests/s | p50 ms | p95 ms | p99 ms "
                      "| errors | " + " | ".join(f"{n} CPU ms/req" for n in measured) + " |")
            print(header)
            print("|" + "---|" * (header.count("|") - 1))
            direct = {"model": "sim-nano", "max_tokens": 64}
            routed = {"model": "auto", "max_tokens": 64}
            for clients in counts:
                print(row("simulator direct", clients,
                          *run(f"{sim.removesuffix('/v1')}/v1/chat/completions", direct,
                               clients, args.seconds), None), flush=True)
                for name, (process, url) in gateways.items():
                    watched = [n for n in measured if n != "gateway"] + [process]
                    before = {n: cpu_s(children[n].pid) for n in watched}
                    result = run(f"{url}/v1/chat/completions", routed, clients, args.seconds)
                    cpu = {n: cpu_s(children[n].pid) - before[n] for n in watched}
                    print(row(name, clients, *result, cpu), flush=True)
            ours = {label: where for label, where in gateways.items() if where[0] != "before"}
            for label, (_process, url) in ours.items():
                print(f"\n| {label}: one call at a time, where the time goes | median ms |"
                      "\n|---|---|")
                for stage, ms in timeline(f"{url}/v1/chat/completions", database_url, 40):
                    print(f"| {stage} | {ms:.1f} |", flush=True)
            if args.batch:
                print()
                submit_batch(env, args.batch, logs)
                for clients in [int(c) for c in args.batch_clients.split(",")]:
                    for label, (process, url) in ours.items():
                        watched = [n for n in measured if n != "gateway"] + [process]
                        before = {n: cpu_s(children[n].pid) for n in watched}
                        result = run(f"{url}/v1/chat/completions", routed, clients,
                                     args.seconds)
                        cpu = {n: cpu_s(children[n].pid) - before[n] for n in watched}
                        print(row(f"{label}, {args.batch} batch requests queued", clients,
                                  *result, cpu), flush=True)
                print(f"batch backlog left: {backlog(database_url)} requests not answered",
                      flush=True)
            print(f"logs: {logs}", file=sys.stderr)
        finally:
            for child in reversed(list(children.values())):
                stop(child)


STAGES = ("gateway: accepted", "ingress -> decided (router)", "decided -> first call (tier)",
          "first call -> result committed", "result committed -> answer read", "total")


def timeline(url: str, database_url: str, calls: int) -> list[tuple[str, float]]:
    """Where one call's time goes, one call at a time: medians (ms) of the stages between
    the record's timestamps (same host clock)."""
    import psycopg

    seen = []
    with httpx.Client(timeout=60) as http:
        for i in range(calls):
            question = {"model": "auto", "max_tokens": 64,
                        "messages": [{"role": "user", "content": f"What is {i} + 7?"}]}
            sent = time.time()
            answer = http.post(url, json=question)
            read = time.time()
            answer.raise_for_status()
            seen.append((answer.json()["tierline"]["request_id"], sent, read))
    stages: list[list[float]] = [[] for _ in STAGES]
    with psycopg.connect(database_url) as conn:
        for request_id, sent, read in seen:
            found = conn.execute(
                "SELECT r.submitted_at, (SELECT min(decided_at) FROM decisions d "
                "WHERE d.request_id = r.id), (SELECT min(started_at) FROM attempts a "
                "WHERE a.request_id = r.id), s.finished_at FROM requests r "
                "JOIN results s ON s.request_id = r.id WHERE r.id = %s",
                (request_id,)).fetchone()
            assert found is not None, request_id
            submitted, decided, called, finished = found
            for stage, seconds in zip(stages, (submitted - sent, decided - submitted,
                                               called - decided, finished - called,
                                               read - finished, read - sent), strict=True):
                stage.append(seconds * 1000)
    return [(name, statistics.median(values)) for name, values in zip(STAGES, stages,
                                                                       strict=True)]


def submit_batch(env: dict[str, str], n: int, logs: Path) -> None:
    """A ``n``-request job on the batch lane, submitted with the CLI (it returns at once)."""
    lines = logs / "batch.jsonl"
    lines.write_text("".join(json.dumps({"prompt": f"Summarise item {i} in a word.",
                                         "max_output_tokens": 16}) + "\n" for i in range(n)))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tierline", "submit", str(lines), "--lane", "batch"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    print(f"batch of {n} submitted in {time.perf_counter() - started:.1f} s", flush=True)


def backlog(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT count(*) FROM requests WHERE lane = 'batch' AND status "
                             "NOT IN ('done', 'failed', 'expired', 'cancelled')").fetchone()
    return int(found[0]) if found else 0


if __name__ == "__main__":
    main()
