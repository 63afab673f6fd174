"""The command line on user input: clear errors with line numbers, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tierline(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env["TIERLINE_POLICY"] = str(ROOT / "policies" / "demo.yaml")
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_submit_rejects_bad_lines_with_their_numbers_and_answers_the_rest(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": "hello", "lane": "realtime", "id": "a"}),
        "{not json",
        json.dumps({"prompt": "classify this", "lane": "urgent"}),
        json.dumps({"lane": "batch"}),
        json.dumps({"prompt": "x" * 200_001}),
        "",
        json.dumps({"prompt": "what is 2+2?", "lane": "batch", "id": "b"}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}], "id": "c"}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    run = tierline("submit", str(source), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "3 accepted, 0 duplicate, 4 rejected" in run.stdout
    for number, reason in [(2, "malformed JSON"), (3, "lane: unknown lane 'urgent'"),
                           (4, "prompt: missing"), (5, "prompt: too long")]:
        assert f"in.jsonl:{number}: rejected: {reason}" in run.stderr
    rejected = (tmp_path / "in.jsonl.rejects.jsonl").read_text().splitlines()
    rejects = [json.loads(x) for x in rejected]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5]
    assert "completed: 3 requests: 3 done" in run.stdout

    job = run.stdout.split("job ")[1].split(":")[0]
    out = tmp_path / "results.jsonl"
    fetched = tierline("results", job, "--out", str(out), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["a", "b", "c"]
    assert all(r["status"] == "done" and r["content"] for r in rows)


def test_a_file_with_no_valid_line_exits_non_zero_with_counts(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text("[1, 2]\n{}\n")
    run = tierline("submit", str(source), cwd=tmp_path)
    assert run.returncode == 1
    assert "0 accepted, 0 duplicate, 2 rejected" in run.stdout
    assert "Traceback" not in run.stderr


def test_unknown_job_and_broken_policy_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "tierline.sqlite").touch()
    run = tierline("status", "no-such-job", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    broken = tmp_path / "p.yaml"
    broken.write_text("tiers: {t0: [m]}\nmodels: {}\nlanes: {}\n")
    run = tierline("--policy", str(broken), "policy", "check", str(broken), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error:") and "p.yaml" in run.stderr
    assert "Traceback" not in run.stderr


def test_demo_runs_the_sample_workload_with_no_servers(tmp_path: Path) -> None:
    run = tierline("demo", cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "330/330 requests answered (0 failed)" in run.stdout
    for word in ("realtime", "standard", "batch", "p95 latency", "saved", "everything on the top"):
        assert word in run.stdout


def test_models_shows_prices_and_the_latency_learned_from_calls(tmp_path: Path, redis_url: str
                                                                ) -> None:
    import time
    import uuid

    import redis

    from tierline.workers.engine.health import ANSWERED, FAILED, RedisHealthStore, Seen

    fast, slow = (f"m-{uuid.uuid4().hex[:8]}" for _ in range(2))
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"tiers: {{t0: [{fast}], t1: [{slow}]}}\n"
        f"models:\n  {fast}: {{provider: openai, usd_per_1m_input: 0.1, usd_per_1m_output: 0.4}}\n"
        f"  {slow}: {{provider: openai, usd_per_1m_input: 5, usd_per_1m_output: 20}}\n"
        "lanes: {realtime: {latency_budget_s: 10}, standard: {latency_budget_s: 300},\n"
        "        batch: {latency_budget_s: 86400}}\n")
    RedisHealthStore(redis.Redis.from_url(redis_url)).record(
        [Seen(slow, ANSWERED, t, 0.3 + 0.004 * t) for t in (50, 100, 200, 300, 120, 80)]
        + [Seen(fast, FAILED)] * 5, time.time())
    env = {**os.environ, "TIERLINE_POLICY": str(policy), "TIERLINE_BROKER_URL": redis_url,
           "COLUMNS": "120"}
    run = subprocess.run([sys.executable, "-m", "tierline", "models"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rows = {line.split("│")[2].strip(): line for line in run.stdout.splitlines()
            if line.count("│") > 5 and line.split("│")[2].strip()}
    assert "0.1 / 0.4" in rows[fast] and rows[fast].split("│")[4].strip() == "0"
    assert "5 / 20" in rows[slow] and "0.30 s + 4.0" in rows[slow] and "│ ok" in rows[slow]
    assert "left alone" in rows[fast] and "s more" in rows[fast]
