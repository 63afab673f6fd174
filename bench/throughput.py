"""Throughput end to end: a classification job through real Redis, Postgres and `celery worker`s.

    python bench/throughput.py --rows 1000000              # headline, then the 20k slices
    python bench/throughput.py --rows 20000 --slice 5000 --profile bench/profiles
    python bench/throughput.py --inserts                   # bulk-insert forms side by side

Each case gets a fresh Postgres database, a flushed Redis database and its own router and
tier worker processes; the producer runs in a child process (so its ru_maxrss is its own)
and submits a generated JSONL file through ``Client.submit_many``. Cases:

- ``bundled``: policies/bench-instant.yaml (instant provider, bundles of up to 256);
- ``baseline``: the same with bundling.max_count 1 and ingress_chunk 1 (one message per request);
- ``sim``: policies/demo.yaml's models over HTTP to ``python -m tierline.sim`` with zero latency,
  the bench's bundling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis
import yaml

from tierline.bench.children import sim_url, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
BENCH_POLICY = ROOT / "policies" / "bench-instant.yaml"
SIM_POLICY = ROOT / "policies" / "demo.yaml"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The bench's own database, flushed per case (TIERLINE_BENCH_REDIS_URL for another one).
REDIS_URL = os.environ.get("TIERLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
LABELS = ("billing", "shipping", "returns", "account", "other")
INSTRUCTION = "Classify the text into exactly one of the labels. Answer with the label only.\n"
WORDS = ("parcel order refund invoice card password late broken charged twice address "
         "monday friday courier login email box label size colour warranty").split()


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` short classification prompts as JSONL, streamed; a third each of terse,
    medium and long ones, which the composite classifier sends to tiers t0, t1 and t2."""
    with path.open("w") as out:
        for i in range(rows):
            length = (3, 8, 70)[i % 3]
            text = " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, length + 1))
            head = "" if i % 3 == 0 else INSTRUCTION
            prompt = f"{head}Labels: {', '.join(LABELS)}\nText:\n{text}\nLabel:"
            out.write(json.dumps({"id": f"r{i}", "prompt": prompt}) + "\n")


def produce(rows_file: Path) -> None:
    """The producer process: submit the file lazily, print timings and peak RSS as JSON."""
    from tierline.producer.client import Client
    from tierline.producer.intake import read_jsonl

    started = time.time()
    report = Client().submit_many(read_jsonl(rows_file), lane="batch", job="bench",
                                  collect_ids=False)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"job_id": report.job_id, "accepted": report.accepted,
                      "started_at": started, "intake_s": time.time() - started,
                      "cpu_s": usage.ru_utime + usage.ru_stime,
                      "maxrss_mb": usage.ru_maxrss / 1024}))


def _tree(pid: int) -> list[int]:
    """A process and its children (the prefork pool)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(int(k) for k in kids)]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _named(name: str) -> list[int]:
    """Pids of processes called ``name`` (postgres backends, redis-server)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class CpuMeter:
    """CPU seconds per group of processes since creation; short-lived ones as last seen."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning the group's pids now
        self.base = {pid: _cpu_s(pid) for find in groups.values() for pid in find()}
        self.last: dict[str, dict[int, float]] = {name: {} for name in groups}

    def sample(self) -> None:
        for name, find in self.groups.items():
            for pid in find():
                self.last[name][pid] = _cpu_s(pid)

    def totals(self) -> dict[str, float]:
        self.sample()
        return {name: round(sum(cpu - self.base.get(pid, 0.0) for pid, cpu in seen.items()), 1)
                for name, seen in self.last.items()}


def _rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
    return total_kb / 1024


@contextmanager
def stack(policy: Path, logs: Path, args: argparse.Namespace, sim: bool = False
          ) -> Iterator[tuple[dict[str, str], dict[str, subprocess.Popen[bytes]]]]:
    """A fresh database, a flushed broker, the simulator if asked, router and tier workers."""
    name = f"tierline_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {**os.environ, "TIERLINE_BROKER_URL": REDIS_URL, "TIERLINE_POLICY": str(policy),
           "TIERLINE_DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"}
    subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True, cwd=ROOT,
                   env=env, capture_output=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if sim:
            procs["sim"] = _start_sim(env, logs)
        quiet = ["--", "--without-mingle", "--without-gossip", "--without-heartbeat",
                 "-l", "WARNING"]
        worker = [sys.executable, "-m", "tierline", "worker"]
        procs["router"] = spawn([*worker, "--role", "router", "-c", str(args.router_c), *quiet,
                                 "-n", f"bench-router-{name}@%h"], env, logs / "router.log",
                                cwd=ROOT)
        procs["tier"] = spawn([*worker, "--role", "tier", "-c", str(args.tier_c), *quiet,
                               "-n", f"bench-tier-{name}@%h"], env, logs / "tier.log", cwd=ROOT)
        time.sleep(4)  # workers import, fork their pools and subscribe
        yield env, procs
    finally:
        for proc in procs.values():
            stop(proc)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_sim(env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    config = logs / "zero-latency.yaml"
    config.write_text("default: {ttft_s: 0, per_token_s: 0, jitter_s: 0, cold_start_s: 0}\n")
    proc = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(SIM_POLICY), "--config",
                  str(config), "--port", "0"], env, logs / "sim.log", cwd=ROOT)
    env["TIERLINE_SIM_URL"] = sim_url(logs / "sim.log", proc)
    return proc


def run_case(label: str, policy: Path, rows_file: Path, rows: int, args: argparse.Namespace,
             logs: Path, sim: bool = False) -> dict[str, Any]:
    """Submit the file, wait for the job to complete, return the figures."""
    with stack(policy, logs, args, sim) as (env, procs):
        db = psycopg.connect(env["TIERLINE_DATABASE_URL"], autocommit=True)
        producer = subprocess.Popen([sys.executable, __file__, "--produce", str(rows_file)],
                                    cwd=ROOT, env=env, stdout=subprocess.PIPE)
        rss: dict[str, dict[str, float]] = {}
        meter = CpuMeter({"postgres": lambda: _named("postgres"),
                          "redis": lambda: _named("redis-server"),
                          **{k: (lambda p=p: _tree(p.pid)) for k, p in procs.items()}})
        profiles: list[subprocess.Popen[bytes]] = []
        job_id = None
        while True:
            time.sleep(0.5)
            meter.sample()
            done = db.execute("select n_tup_ins from pg_stat_user_tables "
                              "where relname = 'results'").fetchone()[0]  # type: ignore[index]
            for mark in (0.1, 0.9):
                if f"{mark:.0%}" not in rss and done >= mark * rows:
                    rss[f"{mark:.0%}"] = {k: round(_rss_mb(_tree(p.pid)), 1)
                                          for k, p in procs.items()}
            if args.profile and not profiles:  # the producer from the start: intake ends first
                profiles = _profile({"producer": producer.pid}, args, label)
            if args.profile and len(profiles) == 1 and done >= 0.2 * rows:
                profiles += _profile({k: _tree(p.pid)[-1] for k, p in procs.items()}, args, label)
            if job_id is None and producer.poll() is not None:
                out = json.loads(producer.stdout.read())  # type: ignore[union-attr]
                job_id = out["job_id"]
            if job_id:
                row = db.execute("select status, finished_at from jobs where id = %s",
                                 (job_id,)).fetchone()
                if row and row[0] == "completed":
                    break
        for proc in profiles:
            proc.wait()
        figures = _figures(db, out, rows, row[1])
        figures.update(case=label, worker_rss_mb=rss,
                       cpu_s={"producer": round(out["cpu_s"], 1), **meter.totals()})
        db.close()
    return figures


def _profile(pids: dict[str, int], args: argparse.Namespace, label: str
             ) -> list[subprocess.Popen[bytes]]:
    """py-spy on the producer and one pool child of each worker."""
    out = []
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    for role, pid in pids.items():
        target = Path(args.profile) / f"{label}-{role}.{args.profile_format}"
        out.append(subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration",
                                     str(args.profile_s), "--rate", "50", "-o", str(target),
                                     "--format", {"svg": "flamegraph", "txt": "raw"}[
                                         args.profile_format]],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return out


def _figures(db: psycopg.Connection[Any], out: dict[str, Any], rows: int, finished_at: float
             ) -> dict[str, Any]:
    """Phases from the record: intake (producer), routing and answering spans, the ledger."""
    q = db.execute
    decided = q("select min(decided_at), max(decided_at) from decisions").fetchone()
    answered = q("select min(finished_at), max(finished_at), count(*) from results").fetchone()
    usd = q("select (select sum(usd) from charges), (select sum(usd) from results)").fetchone()
    tiers = dict(q("select tier, count(*) from decisions group by tier").fetchall())
    start = out["started_at"]
    e2e_s = finished_at - start
    assert answered[2] == rows == out["accepted"], (answered, out)  # type: ignore[index]
    assert usd[0] == usd[1], usd  # type: ignore[index]
    return {
        "rows": rows, "e2e_s": round(e2e_s, 2), "requests_per_s": round(rows / e2e_s),
        "intake_s": round(out["intake_s"], 2),
        "routing_s": round(decided[1] - start, 2),  # type: ignore[index]
        "answered_s": round(answered[1] - start, 2),  # type: ignore[index]
        "first_answer_s": round(answered[0] - start, 2),  # type: ignore[index]
        "producer_maxrss_mb": round(out["maxrss_mb"], 1), "usd": str(usd[0]),  # type: ignore[index]
        "tiers": tiers,
    }


def derived_policy(base: Path, into: Path, **bundling: int) -> Path:
    """``base`` with the bench's bundling (overridden by ``bundling``), written to ``into``."""
    data = yaml.safe_load(base.read_text())
    data["bundling"] = {**yaml.safe_load(BENCH_POLICY.read_text())["bundling"], **bundling}
    into.write_text(yaml.safe_dump(data, sort_keys=False))
    return into


def inserts(repeats: int = 8) -> None:
    """Side by side, one chunk: SQLAlchemy's bulk forms on psycopg 3 against ``unnest`` arrays."""
    from decimal import Decimal

    from sqlalchemy.dialects import postgresql

    from tierline.record.db import engine_for, insert_ignore, insert_new, upgrade
    from tierline.record.schema import attempts, requests

    name = f"tierline_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    engine = engine_for(url)

    def request_rows(n: int) -> list[dict[str, Any]]:
        now = time.time()
        return [{"id": str(uuid.uuid4()), "job_id": None, "seq": i, "tenant": "t", "lane": "batch",
                 "idempotency_key": uuid.uuid4().hex, "body": {"messages": [
                     {"role": "user", "content": f"Labels: a, b\nText:\nparcel {i}"}]},
                 "max_output_tokens": 16, "latency_budget_s": 60.0, "submitted_at": now,
                 "deadline_at": now + 60, "status": "accepted"} for i in range(n)]

    def attempt_rows(ids: list[str]) -> list[dict[str, Any]]:
        return [{"id": f"{i}/0", "request_id": i, "seq": 0, "model": "m", "tier": "t0", "ok": True,
                 "error": None, "tokens_in": 30, "tokens_out": 2, "usage_estimated": False,
                 "latency_s": 0.001, "usd": Decimal("0.0000038"), "started_at": time.time()}
                for i in ids]

    timings: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for form in ("sqlalchemy", "unnest"):
            rows = request_rows(1024)
            wall, cpu = time.perf_counter(), time.process_time()
            with engine.begin() as conn:
                if form == "sqlalchemy":  # insertmanyvalues: multi-row VALUES with RETURNING
                    stmt = postgresql.insert(requests).on_conflict_do_nothing()
                    ids = [r[0] for r in conn.execute(stmt.returning(requests.c.id), rows)]
                else:
                    ids = insert_new(conn, requests, rows, "id")
            timings.setdefault(f"1024 requests, {form}", []).append(
                (time.perf_counter() - wall, time.process_time() - cpu))
            rows = attempt_rows(ids[:256])
            wall, cpu = time.perf_counter(), time.process_time()
            with engine.begin() as conn:
                if form == "sqlalchemy":  # no RETURNING: psycopg executemany, a row at a time
                    conn.execute(postgresql.insert(attempts).on_conflict_do_nothing(), rows)
                else:
                    insert_ignore(conn, attempts, rows)
            timings.setdefault(f"256 attempts, {form}", []).append(
                (time.perf_counter() - wall, time.process_time() - cpu))
    engine.dispose()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for label, runs in timings.items():
        walls, cpus = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
        print(f"{label:28s} median wall {walls[len(runs) // 2] * 1e3:6.1f} ms, "
              f"producer CPU {cpus[len(runs) // 2] * 1e3:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--slice", type=int, default=20_000, help="rows of baseline and sim")
    parser.add_argument("--cases", default="bundled,baseline,bundled-slice,sim")
    parser.add_argument("--router-c", type=int, default=1)
    parser.add_argument("--tier-c", type=int, default=2)
    parser.add_argument("--profile", help="folder for py-spy flame graphs")
    parser.add_argument("--profile-s", type=int, default=20)
    parser.add_argument("--profile-format", choices=("svg", "txt"), default="svg")
    parser.add_argument("--inserts", action="store_true", help="only the bulk-insert side by side")
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inserts:
        return inserts()
    if args.produce:
        return produce(Path(args.produce))
    tmp = Path(tempfile.mkdtemp(prefix="tierline-bench-"))
    sizes = {"bundled": args.rows, "baseline": args.slice, "bundled-slice": args.slice,
             "sim": args.slice}
    policies = {"bundled": BENCH_POLICY, "bundled-slice": BENCH_POLICY,
                "baseline": derived_policy(BENCH_POLICY, tmp / "baseline.yaml", max_count=1,
                                           ingress_chunk=1),
                "sim": derived_policy(SIM_POLICY, tmp / "sim.yaml")}
    files: dict[int, Path] = {}
    for case in args.cases.split(","):
        rows = sizes[case]
        if rows not in files:
            files[rows] = tmp / f"rows-{rows}.jsonl"
            generate(files[rows], rows)
        logs = tmp / case
        logs.mkdir()
        figures = run_case(case, policies[case], files[rows], rows, args, logs,
                           sim=case == "sim")
        print(json.dumps(figures), flush=True)
    print(f"logs: {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
