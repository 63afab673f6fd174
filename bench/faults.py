"""The fault suite: an unattended night's faults on the production stack, then the invariants.

    python bench/faults.py                          # 10,000 requests, the full timeline
    python bench/faults.py --short                  # 300 requests, one kill, short outages
    python bench/faults.py --requests 2000 --json out.json

Real processes as in docker-compose.yml: the simulator, a router worker, tier workers (batch
and, in the full run, realtime), beat and the scheduled-task worker, on a Redis server of its
own (started here, append-only as in compose, on a free port) and a fresh Postgres database
on the server at 127.0.0.1:5432. A supervisor thread restarts any service that exits, as
compose's ``restart: unless-stopped`` does. The job is a JSONL file submitted with
``tierline submit``; a tenth of its lines are bad (malformed, hostile, invalid).

The timeline (seconds after the submit returns) is in ``FULL`` and ``SHORT``: the simulator
answers 30% of calls 5xx throughout and 429 with a Retry-After above 8 s during bursts, the
batch tier worker is SIGKILLed (its process group) and restarted, Redis is stopped and
started again, and the database refuses every connection for a while. Nobody types a
recovery command. The run ends when every request of the job is final, or ``heal_s`` after
the last fault. The invariants, printed and written with ``--json``:

- ``stuck``: requests still accepted or routed at the end;
- ``lost``: valid lines of the file with no request in the database;
- ``double_charges``: charges of one request on one model beyond the calls the simulator
  served for it (calls of unknown outcome, charged at their estimate, excepted);
- ``unaccounted_paid_calls``: calls the simulator served (it bills them) with no charge in
  the ledger, matched by model and prompt (every line's prompt is unique);
- ``batch_rate_limit_failures``: batch requests failed for a rate limit;
- ``time_to_heal_s``: from the end of the last fault until the last request was final.

The exit code is 1 when any invariant fails. See docs/faults.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, whichever one an installed tierline names

from tierline.bench.children import sim_url, spawn, stop  # noqa: E402
from tierline.sim.engine import prompt_digest  # noqa: E402

POLICY = ROOT / "policies" / "demo.yaml"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FINAL = ("done", "failed", "cancelled", "expired")
HEAL_LIMIT_S = 300.0  # issue 14: every request final within 5 minutes of the last fault


@dataclass(frozen=True)
class Timeline:
    """When each fault happens, in seconds after the submit returns, and how long it lasts."""

    requests: int
    kills_at_s: tuple[float, ...]
    bursts: tuple[tuple[float, float, int], ...]  # (at, seconds, Retry-After seconds)
    redis_restart: tuple[float, float]  # (at, seconds down)
    postgres_outage: tuple[float, float]  # (at, seconds refusing connections)
    heal_s: float  # how long to wait for the job after the last fault
    ttft_s: float  # the simulator's time to first token: how long work stays in flight
    tier_concurrency: int
    realtime_tier: bool
    # TIERLINE_VISIBILITY_TIMEOUT_S for every process; None keeps the default. The short run
    # shrinks it so a killed worker's bundle comes back within its window.
    visibility_timeout_s: float | None = None
    # The policy's failure.stall_after_s (the watchdog's patience); None keeps the policy's.
    # The short run shrinks it so a request whose message a fault lost is sent again in time.
    stall_after_s: float | None = None

    def last_fault_end_s(self) -> float:
        ends = [*self.kills_at_s, *(at + s for at, s, _ in self.bursts),
                sum(self.redis_restart), sum(self.postgres_outage)]
        return max(ends)


FULL = Timeline(requests=10_000, kills_at_s=(8, 20, 35, 50, 70),
                bursts=((12, 8, 12), (42, 8, 10)), redis_restart=(26, 3),
                postgres_outage=(56, 20), heal_s=HEAL_LIMIT_S, ttft_s=1.0,
                tier_concurrency=4, realtime_tier=True)
SHORT = Timeline(requests=300, kills_at_s=(3,), bursts=((15, 3, 9),), redis_restart=(6, 2),
                 postgres_outage=(9, 5), heal_s=60, ttft_s=2.0, tier_concurrency=1,
                 realtime_tier=False, visibility_timeout_s=10, stall_after_s=20)

BAD_LINES: tuple[bytes, ...] = (  # cycled through; the two heavy ones appear once each
    b"{not json",
    b'{"lane": "batch"}',
    b'{"prompt": "x", "lane": "urgent"}',
    b'{"prompt": "a\\u0000b"}',
    b'{"prompt": "\\ud800 alone"}',
    b'{"prompt": "x", "latency_budget_s": NaN}',
    b'{"prompt": "x", "max_output_tokens": ' + b"9" * 5000 + b"}",
    b'{"prompt": "caf\xe9"}',
    b"[" * 2000,
    b"[1, 2]",
)
HEAVY_LINES: tuple[bytes, ...] = (b"[" * 100_000, b'{"prompt": "' + b"y" * 2_000_000 + b'"}')


def write_job(path: Path, n: int) -> tuple[int, int]:
    """``n`` lines, every tenth bad; returns (valid, bad)."""
    valid = bad = 0
    with path.open("wb") as out:
        for i in range(n):
            if i % 10 == 9:
                heavy = bad < len(HEAVY_LINES)
                line = HEAVY_LINES[bad] if heavy else BAD_LINES[bad % len(BAD_LINES)]
                bad += 1
            else:
                lane = "standard" if i % 5 == 0 else "batch"
                line = json.dumps({"id": f"f{i}", "lane": lane,
                                   "prompt": f"question {i}: summarise why the night shift "
                                             f"restarted worker {i % 7}"}).encode()
                valid += 1
            out.write(line + b"\n")
    return valid, bad


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A supervised child: restarted when it exits, unless the timeline stopped it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    held: bool = False  # stopped on purpose (Redis while it is down)

    def start(self) -> None:
        self.proc = spawn(self.argv, self.env, self.log, cwd=ROOT)


@dataclass
class Run:
    """What happened: the timeline's events as they ran, and the job's progress."""

    events: list[tuple[float, str]] = field(default_factory=list)
    progress: list[tuple[float, int, int]] = field(default_factory=list)  # (t, final, rows)
    final_at_s: float | None = None

    def note(self, t0: float, what: str) -> None:
        at = round(time.monotonic() - t0, 1)
        self.events.append((at, what))
        print(f"  t={at:6.1f}s  {what}", flush=True)


class Supervisor:
    """Restarts services that exit, a second later, as compose's restart policy does."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Supervisor:
        for service in self.services:
            if service.proc is None:
                service.start()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for service in reversed(self.services):
            if service.proc is not None:
                stop(service.proc, timeout_s=10)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            for service in self.services:
                proc = service.proc
                if not service.held and proc is not None and proc.poll() is not None:
                    time.sleep(1.0)
                    if not self._stop.is_set() and not service.held:
                        service.restarts += 1
                        service.start()

    def named(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


@contextmanager
def fresh_database(keep: bool) -> Iterator[str]:
    name = f"tierline_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True, cwd=ROOT,
                       env={**os.environ, "TIERLINE_DATABASE_URL": url}, capture_output=True)
        yield url
    finally:
        allow_connections(name, True)
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def allow_connections(name: str, allowed: bool) -> None:
    """The database accepts connections again, or refuses them and drops the open ones."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def wait_ready(service: Service, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "ready." in service.log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{service.name} did not start: {service.log.read_text()[-1500:]}")


def counts(db_url: str, job_id: str) -> dict[str, int] | None:
    """The job's requests by status, or None while the database refuses connections."""
    try:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT status, count(*) FROM requests WHERE job_id = %s "
                                "GROUP BY status", (job_id,)).fetchall()
    except psycopg.Error:
        return None
    return {status: n for status, n in rows}


def invariants(db_url: str, job_id: str, valid: int,
               served: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The invariants, read from the record once the run is over. ``served`` is the
    simulator's count of served calls by model and prompt digest; every line's prompt is
    unique, so a digest names one request."""
    with psycopg.connect(db_url) as conn:

        def one(sql: str, *args: Any) -> Any:
            row = conn.execute(sql, args).fetchone()
            return None if row is None else row[0]

        rows = one("SELECT count(*) FROM requests WHERE job_id = %s", job_id)
        stuck = one("SELECT count(*) FROM requests WHERE job_id = %s AND status NOT IN "
                    "('done', 'failed', 'cancelled', 'expired')", job_id)
        requests = {rid: (status, prompt_digest([(m["role"], m["content"])
                                                 for m in body["messages"]]))
                    for rid, status, body in conn.execute(
                        "SELECT id, status, body FROM requests WHERE job_id = %s", (job_id,))}
        # (request, model, charges, charges of calls whose outcome was never seen)
        ledger = conn.execute(
            "SELECT c.request_id, c.model, count(*),"
            " count(*) FILTER (WHERE a.error LIKE 'Unknown%%')"
            " FROM charges c JOIN attempts a ON a.id = c.attempt_id"
            " WHERE c.job_id = %s GROUP BY c.request_id, c.model", (job_id,)).fetchall()
        rate_limited = one(
            "SELECT count(*) FROM requests r JOIN results s ON s.request_id = r.id "
            "WHERE r.job_id = %s AND r.lane = 'batch' AND r.status = 'failed' AND ("
            "s.error ILIKE '%%rate limit%%' OR s.error ILIKE '%%ratelimit%%' "
            "OR s.error LIKE '%%429%%')", job_id)
        by_status: dict[str, int] = dict(conn.execute(
            "SELECT status, count(*) FROM requests WHERE job_id = %s GROUP BY status",
            (job_id,)).fetchall())
        reasons = conn.execute(
            "SELECT left(coalesce(s.error, r.status), 120) AS why, count(*) FROM requests r "
            "LEFT JOIN results s ON s.request_id = r.id WHERE r.job_id = %s AND r.status <> "
            "'done' GROUP BY why ORDER BY count(*) DESC LIMIT 6", (job_id,)).fetchall()
    left = {(model, digest): n for model, by in served.items() for digest, n in by.items()}
    doubles = unserved_estimates = charged = unaccounted = 0
    examples: list[dict[str, Any]] = []  # what to look up when a count is not 0
    for rid, model, n, unknown in ledger:
        paid = left.pop((model, requests[rid][1]), 0)
        charged += n
        unaccounted += max(paid - n, 0)
        doubles += max(n - paid - unknown, 0)  # more charges than calls, beyond the unknown
        unserved_estimates += min(unknown, max(n - paid, 0))
        if paid > n or n - paid - unknown > 0:
            examples.append({"request": rid, "status": requests[rid][0], "model": model,
                             "served": paid, "charged": n, "unknown_outcome": unknown})
    by_digest = {digest: (rid, status) for rid, (status, digest) in requests.items()}
    for (model, digest), paid in left.items():  # served, and no charge at all for it
        unaccounted += paid
        rid, status = by_digest.get(digest, (None, None))
        examples.append({"request": rid, "status": status, "model": model, "served": paid,
                         "charged": 0, "unknown_outcome": 0})
    return {"rows": rows, "stuck": stuck, "lost": max(valid - rows, 0),
            "double_charges": doubles, "charged_calls": charged,
            "served_calls": sum(n for by in served.values() for n in by.values()),
            "unaccounted_paid_calls": unaccounted,
            "unknown_outcome_charged_not_served": unserved_estimates,
            "batch_rate_limit_failures": rate_limited, "by_status": by_status,
            "not_done_reasons": [[why, n] for why, n in reasons],
            "ledger_mismatches": examples[:20]}


def served_calls(url: str) -> dict[str, dict[str, int]]:
    return dict(httpx.get(f"{url}/sim/served-by-prompt", timeout=30).json())


def run(timeline: Timeline, *, keep: bool = False, seed: int = 7) -> dict[str, Any]:
    """Run the suite once; returns the report (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="tierline-faults-"))
    logs = work / "logs"
    logs.mkdir()
    job_file = work / "night.jsonl"
    valid, bad = write_job(job_file, timeline.requests)
    sim_config = work / "sim.yaml"
    sim_config.write_text(f"seed: {seed}\ncount_prompts: true\ndefault: {{error_rate: 0.3, "
                          f"ttft_s: {timeline.ttft_s}, jitter_s: 0.1, cold_start_s: 0}}\n")
    redis_port = free_port()
    redis_dir = work / "redis"
    redis_dir.mkdir()
    redis_server = shutil.which("redis-server") or "redis-server"
    report: dict[str, Any] = {"timeline": asdict(timeline), "valid_lines": valid,
                              "bad_lines": bad, "work_dir": str(work)}
    policy = POLICY
    if timeline.stall_after_s is not None:
        spec = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
        spec.setdefault("failure", {})["stall_after_s"] = timeline.stall_after_s
        policy = work / "policy.yaml"
        policy.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with fresh_database(keep) as db_url:
        db_name = db_url.rsplit("/", 1)[1]
        redis = Service("redis", [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "yes", "--dir", str(redis_dir)],
                        dict(os.environ), logs / "redis.log")
        sim = Service("sim", [sys.executable, "-m", "tierline.sim", "--policy", str(POLICY),
                              "--config",
                              str(sim_config), "--port", "0"], dict(os.environ), logs / "sim.log")
        redis.start()
        sim.start()
        url = sim_url(sim.log, sim.proc)
        sim.argv[-1] = url.rsplit(":", 1)[1]  # a restarted simulator keeps its port
        env = {**os.environ, "TIERLINE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
               "TIERLINE_DATABASE_URL": db_url, "TIERLINE_POLICY": str(policy),
               "TIERLINE_SIM_URL": url}
        if timeline.visibility_timeout_s is not None:
            env["TIERLINE_VISIBILITY_TIMEOUT_S"] = f"{timeline.visibility_timeout_s:g}"
        worker = [sys.executable, "-m", "tierline", "worker"]
        quiet = ["--without-mingle", "--without-gossip"]
        celery = [sys.executable, "-m", "celery", "-A", "tierline.schedules.beat"]
        services = [
            Service("router", [*worker, "--role", "router", "-c", "2", "--", *quiet,
                               "-n", "router@%h"], env, logs / "router.log"),
            Service("tier-batch", [*worker, "--role", "tier", "--lane", "standard", "--lane",
                                   "batch", "-c", str(timeline.tier_concurrency), "--", *quiet,
                                   "-n", "batch@%h"], env, logs / "tier-batch.log"),
            Service("scheduled", [*celery, "worker", "-Q", "schedules", "-c", "1", "-l", "INFO",
                                  *quiet, "-n", "scheduled@%h"], env, logs / "scheduled.log"),
            Service("beat", [*celery, "beat", "-l", "INFO", "--schedule",
                             str(work / "celerybeat-schedule")], env, logs / "beat.log"),
        ]
        if timeline.realtime_tier:
            services.append(Service("tier-realtime", [
                *worker, "--role", "tier", "--lane", "realtime", "-c", "2", "--pool", "threads",
                "--", *quiet, "-n", "realtime@%h"], env, logs / "tier-realtime.log"))
        try:
            with Supervisor([redis, sim, *services]) as supervisor:
                for service in services:
                    if service.name != "beat":
                        wait_ready(service)
                report |= _night(timeline, supervisor, env, job_file, valid, db_name, db_url,
                                 url)
                report["restarts"] = {s.name: s.restarts for s in supervisor.services}
        finally:
            report["tracebacks"] = {log.name: log.read_text(errors="replace").count("Traceback")
                                    for log in logs.iterdir()}
    return report


def _night(timeline: Timeline, supervisor: Supervisor, env: dict[str, str], job_file: Path,
           valid: int, db_name: str, db_url: str, url: str) -> dict[str, Any]:
    """Submit the job, play the timeline, wait for the job to heal, check the invariants."""
    began = time.monotonic()
    submit = subprocess.run([sys.executable, "-m", "tierline", "submit", str(job_file),
                             "--job", "night"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    if "job " not in submit.stdout:
        raise SystemExit(f"submit failed: {submit.stdout}\n{submit.stderr[-3000:]}")
    job_id = submit.stdout.split("job ", 1)[1].split(":", 1)[0]
    summary = submit.stdout.strip().splitlines()[0]
    print(f"submitted in {time.monotonic() - began:.1f} s: {summary}", flush=True)
    run = Run()
    t0 = time.monotonic()
    events: list[tuple[float, str, Callable[[], None]]] = []
    for at in timeline.kills_at_s:
        events.append((at, "SIGKILL tier-batch", lambda: _kill(supervisor.named("tier-batch"))))
    for at, seconds, retry_after_s in timeline.bursts:
        events.append((at, f"429 burst {seconds:g} s, Retry-After {retry_after_s} s",
                       partial(_burst, url, seconds, retry_after_s)))
    redis = supervisor.named("redis")
    at, down_s = timeline.redis_restart
    events.append((at, "Redis stopped", lambda: _hold(redis, True)))
    events.append((at + down_s, "Redis started", lambda: _hold(redis, False)))
    at, down_s = timeline.postgres_outage
    events.append((at, "Postgres refuses connections", lambda: allow_connections(db_name, False)))
    events.append((at + down_s, "Postgres accepts connections",
                   lambda: allow_connections(db_name, True)))
    events.sort(key=lambda e: e[0])
    last_fault_s = timeline.last_fault_end_s()
    next_poll = 0.0
    while True:
        now = time.monotonic() - t0
        while events and events[0][0] <= now:
            _, what, act = events.pop(0)
            act()
            run.note(t0, what)
        if now >= next_poll:
            next_poll = now + 1.0
            seen = counts(db_url, job_id)
            if seen is not None:
                final = sum(n for s, n in seen.items() if s in FINAL)
                run.progress.append((round(now, 1), final, sum(seen.values())))
                if final == sum(seen.values()) >= valid:
                    run.final_at_s = run.final_at_s or now
                else:
                    run.final_at_s = None
        if not events and run.final_at_s is not None:
            break
        if now > last_fault_s + timeline.heal_s:
            run.note(t0, f"gave up: not healed {timeline.heal_s:g} s after the last fault")
            break
        time.sleep(0.1)
    found = invariants(db_url, job_id, valid, served_calls(url))
    heal_s = None if run.final_at_s is None else round(max(run.final_at_s - last_fault_s, 0), 1)
    checks = {"stuck": found["stuck"] == 0, "lost": found["lost"] == 0,
              "double_charges": found["double_charges"] == 0,
              "unaccounted_paid_calls": found["unaccounted_paid_calls"] == 0,
              "batch_rate_limit_failures": found["batch_rate_limit_failures"] == 0,
              "time_to_heal_s": heal_s is not None and heal_s <= min(timeline.heal_s,
                                                                     HEAL_LIMIT_S)}
    return {"job_id": job_id, "submit": summary, "events": run.events,
            "last_fault_end_s": last_fault_s, "time_to_heal_s": heal_s,
            "progress": run.progress[-5:], **found, "checks": checks,
            "passed": all(checks.values())}


def _kill(service: Service) -> None:
    """SIGKILL the service's whole process group (a prefork pool too), as the OOM killer or
    a lost host would; the supervisor starts it again."""
    if service.proc is not None:
        try:
            os.killpg(service.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _burst(url: str, seconds: float, retry_after_s: int) -> None:
    httpx.post(f"{url}/sim/burst", json={"seconds": seconds, "retry_after_s": retry_after_s},
               timeout=10).raise_for_status()


def _hold(service: Service, down: bool) -> None:
    """Stop a service and keep it down (the supervisor leaves it), or start it again."""
    service.held = down
    if down and service.proc is not None:
        stop(service.proc, signal.SIGTERM, timeout_s=10)
    elif not down:
        service.start()


def show(report: dict[str, Any]) -> None:
    checks = report["checks"]
    heal = report["time_to_heal_s"]
    rows = [("stuck", report["stuck"]), ("lost", report["lost"]),
            ("double_charges", report["double_charges"]),
            ("unaccounted_paid_calls", f"{report['unaccounted_paid_calls']} (served "
                                       f"{report['served_calls']}, charged "
                                       f"{report['charged_calls']})"),
            ("batch_rate_limit_failures", report["batch_rate_limit_failures"]),
            ("time_to_heal_s", "not healed" if heal is None else heal)]
    print(f"\n{report['submit']}")
    print(f"requests by status: {report['by_status']}")
    for name, value in rows:
        print(f"  {'ok  ' if checks[name] else 'FAIL'} {name:<27} {value}")
    print(f"  info charged at an estimate, never served (unknown outcome): "
          f"{report['unknown_outcome_charged_not_served']}")
    if report["not_done_reasons"]:
        print("not done, by reason:")
        for why, n in report["not_done_reasons"]:
            print(f"  {n:>6}  {why}")
    print(f"restarts: {report['restarts']}; tracebacks in logs: "
          f"{ {k: v for k, v in report['tracebacks'].items() if v} }; logs in "
          f"{report['work_dir']}")
    print("PASSED" if report["passed"] else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="300 requests, one kill, short outages (the CI version, 80-100 s)")
    parser.add_argument("--requests", type=int, default=None, help="lines in the job file")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--heal-s", type=float, default=None,
                        help="how long to wait for the job after the last fault (default: "
                             "300 s, 60 s with --short)")
    args = parser.parse_args(argv)
    timeline = SHORT if args.short else FULL
    if args.requests is not None:
        timeline = Timeline(**{**asdict(timeline), "requests": args.requests})
    if args.heal_s is not None:
        timeline = Timeline(**{**asdict(timeline), "heal_s": args.heal_s})
    started = time.monotonic()
    report = run(timeline, keep=args.keep)
    report["wall_s"] = round(time.monotonic() - started, 1)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
