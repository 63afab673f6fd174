"""Realtime latency through the HTTP gateway: a polling wait against a notified one, side by side.

    git worktree add --detach /tmp/wt-before <the commit before wait listened>
    python bench/gateway_latency.py --before /tmp/wt-before --calls 50

One fresh Postgres database, Redis database 10 (flushed), the simulator (policies/demo.yaml)
and one ``tierline worker --role all`` running this tree's code, so every commit notifies.
Two gateways serve that stack: one running the ``--before`` tree (its ``Client.wait`` polls,
backing off to 0.5 s, and ignores the notifications) and one running this tree (it listens).
Calls go to the two in turn, one at a time, so both see the same load; the first of each
pair alternates. A call is timed from sending the request to reading the answer; "after
commit" is the time from the worker's ``finished_at`` to the answer read (same host clock).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import redis

from tierline.bench.children import sim_url, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "demo.yaml"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/10"  # this bench's own database: flushed per run
_GATEWAY = re.compile(r"tierline gateway on (http://\S+)/v1")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new Postgres database, dropped afterwards."""
    name = f"tierline_gw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def gateway_url(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> str:
    """The URL a gateway child announced in ``log``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        found = _GATEWAY.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"the gateway did not start: {log.read_text(errors='replace')[-800:]}")


def call(http: httpx.Client, url: str, prompt: str) -> tuple[float, float, str]:
    """One realtime chat completion: (seconds from send to answer read, when the answer
    was read by the wall clock, request id)."""
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    started = time.perf_counter()
    response = http.post(f"{url}/v1/chat/completions", json=body)
    elapsed, read_at = time.perf_counter() - started, time.time()
    response.raise_for_status()
    return elapsed, read_at, response.json()["tierline"]["request_id"]


def finished_at(database_url: str, request_ids: list[str]) -> dict[str, float]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT request_id, finished_at FROM results "
                            "WHERE request_id = ANY(%s)", (request_ids,)).fetchall()
    return {rid: float(at) for rid, at in rows}


def summary(name: str, seconds: list[float], after_commit: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.1f} | {p90:.1f} | "
            f"{statistics.fmean(ms):.1f} | {ms[0]:.1f} | {ms[-1]:.1f} | "
            f"{statistics.median(after_commit) * 1000:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True,
                        help="a checkout of the tree to compare with (git worktree)")
    parser.add_argument("--calls", type=int, default=50, help="measured calls per gateway")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured calls per gateway")
    args = parser.parse_args()

    redis.Redis.from_url(REDIS_URL).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="gateway-latency-"))
    children: list[subprocess.Popen[bytes]] = []
    with fresh_database() as database_url:
        env = {**os.environ, "TIERLINE_BROKER_URL": REDIS_URL,
               "TIERLINE_DATABASE_URL": database_url, "TIERLINE_POLICY": str(POLICY),
               "PYTHONUNBUFFERED": "1"}
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True,
                       cwd=ROOT, env=env, capture_output=True)
        try:
            sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--port",
                         "0"],
                        env, logs / "sim.log", cwd=ROOT)
            children.append(sim)
            env["TIERLINE_SIM_URL"] = sim_url(logs / "sim.log", sim)
            children.append(spawn(
                [sys.executable, "-m", "tierline", "worker", "--role", "all", "--",
                 "--without-mingle", "--without-gossip", "-n", "gw-bench@%h"],
                {**env, "PYTHONPATH": str(ROOT)}, logs / "worker.log", cwd=ROOT))
            urls = {}
            for name, tree in (("polling (before)", args.before.resolve()),
                               ("notified (after)", ROOT)):
                log = logs / f"gateway-{tree.name}.log"
                proc = spawn([sys.executable, "-m", "tierline", "gateway", "--port", "0"],
                             {**env, "PYTHONPATH": str(tree)}, log, cwd=tree)
                children.append(proc)
                urls[name] = gateway_url(log, proc)
            names = list(urls)
            timings: dict[str, list[tuple[float, float, str]]] = {name: [] for name in names}
            with httpx.Client(timeout=60) as http:
                for i in range(args.warmup + args.calls):
                    order = names if i % 2 == 0 else names[::-1]
                    for name in order:
                        measured = call(http, urls[name], f"What is {i} + {len(name)}? ({name})")
                        if i >= args.warmup:
                            timings[name].append(measured)
                    print(f"\r{i + 1}/{args.warmup + args.calls}", end="", file=sys.stderr)
            print(file=sys.stderr)
            print("| gateway wait | calls | median ms | p90 ms | mean ms | min ms | max ms "
                  "| median ms after commit |")
            print("|---|---|---|---|---|---|---|---|")
            for name in names:
                done = finished_at(database_url, [rid for _, _, rid in timings[name]])
                print(summary(name, [s for s, _, _ in timings[name]],
                              [read_at - done[rid] for _, read_at, rid in timings[name]]))
        finally:
            for proc in reversed(children):
                stop(proc)


if __name__ == "__main__":
    main()
