"""The model health registry's effect on realtime requests, before and after it, side by side.

    git worktree add --detach /tmp/wt-before <the commit before the registry>
    python bench/health.py --before /tmp/wt-before

Two scenarios, each run once with a worker of the ``--before`` tree (no registry) and once
with a worker of this tree:

- **down**: sim-mid fails every call (``error_rate: 1.0``). Before, every call pays its
  retries before falling back to sim-nano; now, once 5 calls in a row have failed, the
  breaker is open and requests fall back at once (``CircuitOpen``).
- **slow**: sim-mid answers in about 3-4 s (``per_token_s`` × ``answer_tokens``), the realtime
  budget is 2 s. Before, a request waits for its deadline and fails; now, once the registry
  has seen 5 answers, sim-mid is not called (``TooSlow``) and sim-nano answers at once. The
  5 answers come from ``--warmup`` standard-lane requests (300 s budget) answered before
  the realtime requests are submitted; they are left out of the table, and so are their
  sim-mid calls.

Each run has its own simulator (``python -m tierline.sim``, a bench policy written to a temp
dir: the
demo's models, ``kind: single``, every band routed to t1, so the fallback chain is
sim-mid → sim-nano), Redis database 13 (flushed) and one ``tierline worker --role all``
started with that tree as cwd and PYTHONPATH; one fresh Postgres database serves every run.
The bench submits ``--requests`` realtime requests in chunks of ``--chunk`` every
``--every-s`` through the Python API, and reads each request's result: its status, model
and latency (finished - submitted, as recorded). Calls per model are the simulator's count
of HTTP calls (``GET /sim/stats``), retries included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from gateway_latency import fresh_database

from tierline import Client
from tierline.bench.children import sim_url, spawn, stop
from tierline.config.settings import load_settings
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "policies" / "demo.yaml"
REDIS_URL = "redis://127.0.0.1:6379/13"  # this bench's own database: flushed per run
SCENARIOS = ("down", "slow")
# ~150 prompt tokens, so the simulated answer reaches the model's answer_tokens cap
PROMPT = ("Request {i}: read the following note and reply with a short summary of it. " +
          "The harbour opens at dawn, the ferries leave on the hour, and the market by "
          "the quay sells fish, bread and coffee until noon. " * 5)


@dataclass
class Run:
    """What one worker made of one scenario's realtime requests."""

    scenario: str
    tree: str
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    calls: dict[str, int] = field(default_factory=dict)  # simulator HTTP calls, realtime phase
    warmup_calls: dict[str, int] = field(default_factory=dict)
    warmup_answered: int = 0
    seconds: float = 0.0


def bench_policy(scenario: str, budget_s: float) -> dict[str, Any]:
    """The demo's tiers and models, ``kind: single``, every band to t1."""
    policy = yaml.safe_load(DEMO.read_text())
    policy["name"] = f"health-bench-{scenario}"
    policy["strategy"] = {"kind": "single"}
    policy["classifier"]["band_tiers"] = {"low": "t1", "mid": "t1", "high": "t1"}
    if scenario == "slow":
        policy["lanes"]["realtime"]["latency_budget_s"] = budget_s
    return policy


def sim_config(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    if scenario == "down":
        return {"seed": 7, "models": {"sim-mid": {"error_rate": 1.0}}}
    return {"seed": 7, "models": {"sim-mid": {"per_token_s": args.slow_per_token_s,
                                              "answer_tokens": args.slow_answer_tokens}}}


def wait_ready(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    """Until the Celery worker logged that it is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not start: {log.read_text(errors='replace')[-800:]}")


def sim_stats(url: str) -> dict[str, int]:
    stats = httpx.get(f"{url}/sim/stats", timeout=10).json()
    return {model: s["calls"] for model, s in stats.items()}


def run_once(scenario: str, tree_name: str, tree: Path, args: argparse.Namespace,
             database_url: str, logs: Path) -> Run:
    """One scenario against one tree's worker: fresh simulator, Redis database and worker."""
    run = Run(scenario, tree_name)
    redis.Redis.from_url(REDIS_URL).flushdb()
    policy_path = logs / f"policy-{scenario}.yaml"
    config = logs / f"sim-{scenario}.yaml"
    env = {**os.environ, "TIERLINE_BROKER_URL": REDIS_URL, "TIERLINE_DATABASE_URL": database_url,
           "TIERLINE_POLICY": str(policy_path), "PYTHONUNBUFFERED": "1"}
    env.pop("TIERLINE_REDIS_URL", None)
    label = f"{scenario}-{tree_name}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(policy_path), "--config",
                     str(config), "--port", "0"], {**env, "PYTHONPATH": str(ROOT)},
                    logs / f"sim-{label}.log", cwd=ROOT)
        children.append(sim)
        url = sim_url(logs / f"sim-{label}.log", sim)
        env["TIERLINE_SIM_URL"] = url
        worker_log = logs / f"worker-{label}.log"
        worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "all",
                        "--concurrency", str(args.concurrency), "--",
                        "--without-mingle", "--without-gossip", "-n", f"health-{label}@%h"],
                       {**env, "PYTHONPATH": str(tree)}, worker_log, cwd=tree)
        children.append(worker)
        wait_ready(worker_log, worker)
        client = Client(Runtime(load_settings(env), load_policy(policy_path), env))
        if scenario == "slow" and args.warmup:
            job = client.submit_many([{"prompt": PROMPT.format(i=f"warm-up {i}")}
                                      for i in range(args.warmup)], lane="standard",
                                     job=f"{label}-warmup").job_id
            client.wait(job, timeout_s=120)
            run.warmup_answered = sum(r["status"] == "done" and r["model"] == "sim-mid"
                                      for r in client.results(job))
        run.warmup_calls = sim_stats(url)
        started = time.monotonic()
        jobs = []
        for start in range(0, args.requests, args.chunk):
            items = [{"prompt": PROMPT.format(i=f"{label} {i}")}
                     for i in range(start, min(start + args.chunk, args.requests))]
            jobs.append(client.submit_many(items, lane="realtime", job=label).job_id)
            time.sleep(max(0.0, started + args.every_s * len(jobs) - time.monotonic()))
        for job in jobs:
            client.wait(job, timeout_s=120)
        run.seconds = time.monotonic() - started
        for job in jobs:
            for row in client.results(job):
                run.statuses[row["status"]] += 1
                if row["latency_s"] is not None:
                    run.latencies_s.append(row["latency_s"])
                if row["status"] == "done":
                    run.models[row["model"]] += 1
                elif row["error"]:
                    run.errors[row["error"].split(":", 1)[0]] += 1
        after = sim_stats(url)
        run.calls = {m: n - run.warmup_calls.get(m, 0) for m, n in after.items()}
        client.rt.engine.dispose()
    finally:
        for child in reversed(children):
            stop(child)
    return run


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def table(runs: list[Run], args: argparse.Namespace) -> str:
    scenario = runs[0].scenario
    budget_s = bench_policy(scenario, args.budget_s)["lanes"]["realtime"]["latency_budget_s"]
    what = ("sim-mid fails every call" if scenario == "down" else
            f"sim-mid ~{args.slow_per_token_s * args.slow_answer_tokens:.1f} s per answer")
    what += f", realtime budget {budget_s:g} s"
    lines = [f"**{scenario}**: {what}; {args.requests} realtime requests in chunks of "
             f"{args.chunk} every {args.every_s:g} s",
             "",
             "| worker | answered | failed | p50 ms | p95 ms | answered by | sim-mid calls "
             "| sim-nano calls | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        ms = [s * 1000 for s in run.latencies_s]
        answered_by = ", ".join(f"{m} {n}" for m, n in sorted(run.models.items())) or "-"
        errors = ", ".join(f"{e} {n}" for e, n in sorted(run.errors.items())) or "-"
        lines.append(
            f"| {run.tree} | {run.statuses['done']} | {run.statuses['failed']} | "
            f"{pct(ms, 0.5):.0f} | {pct(ms, 0.95):.0f} | {answered_by} | "
            f"{run.calls.get('sim-mid', 0)} | {run.calls.get('sim-nano', 0)} | {errors} |")
    if scenario == "slow":
        lines.append("")
        lines.append("warm-up (standard lane, not in the table): " + "; ".join(
            f"{r.tree}: {r.warmup_answered}/{args.warmup} answered by sim-mid, "
            f"{r.warmup_calls.get('sim-mid', 0)} sim-mid calls" for r in runs))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True,
                        help="a checkout of the tree to compare with (git worktree)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated, of: " + ", ".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=60, help="realtime requests per run")
    parser.add_argument("--chunk", type=int, default=5, help="requests per submission")
    parser.add_argument("--every-s", type=float, default=0.5, help="seconds between chunks")
    parser.add_argument("--warmup", type=int, default=6,
                        help="slow: standard-lane requests answered first, for the registry")
    parser.add_argument("--budget-s", type=float, default=2.0,
                        help="slow: the realtime lane's latency budget")
    parser.add_argument("--slow-per-token-s", type=float, default=0.09)
    parser.add_argument("--slow-answer-tokens", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4,
                        help="worker processes (Celery prefork) of each worker")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {sorted(unknown)}")

    logs = Path(tempfile.mkdtemp(prefix="health-bench-"))
    for scenario in SCENARIOS:
        (logs / f"policy-{scenario}.yaml").write_text(
            yaml.safe_dump(bench_policy(scenario, args.budget_s), sort_keys=False))
        (logs / f"sim-{scenario}.yaml").write_text(json.dumps(sim_config(scenario, args)))
    trees = [("before", args.before.resolve()), ("now", ROOT)]
    runs: list[Run] = []
    with fresh_database() as database_url:
        # the submitting side (this process) reaches the broker through Celery's app config
        os.environ.update(TIERLINE_BROKER_URL=REDIS_URL, TIERLINE_DATABASE_URL=database_url)
        os.environ.pop("TIERLINE_REDIS_URL", None)
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True, cwd=ROOT,
                       env={**os.environ, "TIERLINE_DATABASE_URL": database_url,
                            "TIERLINE_BROKER_URL": REDIS_URL,
                            "TIERLINE_POLICY": str(logs / "policy-down.yaml")},
                       capture_output=True)
        try:
            for scenario in scenarios:
                for name, tree in trees:
                    runs.append(run_once(scenario, name, tree, args, database_url, logs))
                    print(f"{scenario} / {name}: {runs[-1].seconds:.1f} s", file=sys.stderr)
        finally:
            redis.Redis.from_url(REDIS_URL).flushdb()
    for scenario in scenarios:
        print(table([r for r in runs if r.scenario == scenario], args))
        print()
    print(f"logs: {logs}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(
            [{**{k: dict(v) if isinstance(v, Counter) else v for k, v in vars(r).items()},
              "p50_ms": pct(r.latencies_s, 0.5) * 1000,
              "p95_ms": pct(r.latencies_s, 0.95) * 1000} for r in runs], indent=1))


if __name__ == "__main__":
    main()
