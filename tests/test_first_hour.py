"""A newcomer's first hour, command by command, from a folder outside the checkout.

Each test runs ``python -m tierline`` (or the README's Python snippet) with the checkout on
PYTHONPATH, a fresh home folder and no TIERLINE_* servers set, as someone who has just
cloned the project would.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "celery", "kombu", "httpx", "numpy", "redis")


def newcomer_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of someone with a fresh home and no tierline settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIERLINE_") and k not in ("XDG_DATA_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def tierline(*args: str, cwd: Path, home: Path, timeout: float = 120,
             **extra: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=cwd,
                          env=newcomer_env(home, **extra), capture_output=True, text=True,
                          timeout=timeout)


def record_of(home: Path) -> Path:
    return home / ".local" / "share" / "tierline" / "tierline.sqlite"


def job_of(output: str) -> str:
    found = re.search(r"job ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def readme_python_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if "import tierline" in b and "submit_many" in b)


def test_the_readme_python_snippet_runs_on_the_embedded_stack_with_no_broker(
        tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    (cwd / "snippet.py").write_text(readme_python_snippet())
    run = subprocess.run([sys.executable, "snippet.py"], cwd=cwd, env=newcomer_env(home),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert re.search(r"^doc-1 done sim-\w+ ", run.stdout, re.M), run.stdout
    assert record_of(home).exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["snippet.py"]  # no stray record here


def test_every_command_finds_the_record_from_any_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "a" / "in.jsonl"
    source.parent.mkdir()
    source.write_text("".join(json.dumps({"prompt": f"say {i}", "id": f"k{i}"}) + "\n"
                              for i in range(3)))
    submitted = tierline("submit", str(source), cwd=tmp_path / "a", home=home)
    assert submitted.returncode == 0, submitted.stderr
    job = job_of(submitted.stdout)

    elsewhere = tmp_path / "b"
    status = tierline("status", job, cwd=elsewhere, home=home)
    assert status.returncode == 0, status.stderr
    assert "completed: 3 requests: 3 done" in status.stdout
    rows = tierline("results", job, cwd=elsewhere, home=home).stdout.splitlines()
    assert [json.loads(r)["key"] for r in rows] == ["k0", "k1", "k2"]
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "a" / "tierline.sqlite").exists()


def test_a_missing_record_is_a_clear_error_and_leaves_no_file(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    for command in (("status", "some-job"), ("results", "some-job"), ("resume", "some-job")):
        run = tierline(*command, cwd=cwd, home=home)
        assert run.returncode == 2, run.stderr
        assert f"no tierline record at {record_of(home)}" in run.stderr
        assert "Traceback" not in run.stderr
    assert not record_of(home).exists()
    assert list(cwd.iterdir()) == []


def test_resume_answers_a_job_left_unanswered_instead_of_claiming_to(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    source = cwd / "in.jsonl"
    cwd.mkdir()
    source.write_text("".join(json.dumps({"prompt": f"say {i}"}) + "\n" for i in range(4)))
    # Accepted into the data directory's record while the broker is away: nothing answers it.
    away = {"TIERLINE_BROKER_URL": "redis://127.0.0.1:9/0",
            "TIERLINE_REDIS_URL": "redis://127.0.0.1:9/0",
            "TIERLINE_DATABASE_URL": f"sqlite:///{record_of(home)}"}
    assert tierline("db", "upgrade", cwd=cwd, home=home, **away).returncode == 0
    stranded = tierline("submit", str(source), cwd=cwd, home=home, **away)
    job = job_of(stranded.stdout)
    assert "4 accepted requests could not be enqueued" in stranded.stderr, stranded.stderr

    status = tierline("status", job, cwd=cwd, home=home)
    assert "completed" not in status.stdout
    assert f"`tierline resume {job}` answers the rest here" in status.stderr

    swept = tierline("sweep", cwd=cwd, home=home)  # no broker: it says it enqueues nothing
    assert swept.returncode == 0 and "enqueued" not in swept.stdout
    assert "`tierline resume JOB` answers" in swept.stderr

    resumed = tierline("resume", job, cwd=cwd, home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert f"4 unanswered requests of job {job}: answering them in this process" in resumed.stdout
    assert "completed: 4 requests: 4 done" in resumed.stdout
    status = tierline("status", job, cwd=tmp_path, home=home)
    assert "completed: 4 requests: 4 done" in status.stdout


def test_the_demo_says_how_to_inspect_its_job_and_those_commands_work(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = tierline("demo", "--requests", "12", cwd=tmp_path / "a", home=home, timeout=90)
    assert demo.returncode == 0, demo.stderr
    assert f"The record is kept in {record_of(home)}" in demo.stdout
    command = re.search(r"^\s+(tierline status \S+)$", demo.stdout, re.M)
    assert command, demo.stdout
    status = tierline(*command.group(1).split()[1:], cwd=tmp_path / "b", home=home)
    assert "(demo): completed: 12 requests: 12 done" in status.stdout, status.stderr

    kept = tmp_path / "kept.sqlite"
    demo = tierline("demo", "--requests", "5", "--db", str(kept), cwd=tmp_path / "a",
                    home=home, timeout=90)
    assert demo.returncode == 0, demo.stderr
    command = re.search(r"^\s+TIERLINE_DATABASE_URL=(\S+) tierline results (\S+)$", demo.stdout,
                        re.M)
    assert command, demo.stdout
    rows = tierline("results", command.group(2), cwd=tmp_path / "b", home=home,
                    TIERLINE_DATABASE_URL=command.group(1)).stdout.splitlines()
    assert len(rows) == 5 and all(json.loads(r)["status"] == "done" for r in rows)


def test_a_resubmitted_file_returns_the_earlier_answers_and_exits_zero(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    source = cwd / "in.jsonl"
    good = [json.dumps({"prompt": f"say {i}", "id": f"k{i}"}) for i in range(3)]
    source.write_text("\n".join([*good, "{not json"]) + "\n")
    first = tierline("submit", str(source), cwd=cwd, home=home)
    assert first.returncode == 0, first.stderr
    job = job_of(first.stdout)

    again = tierline("submit", str(source), cwd=cwd, home=home)
    assert again.returncode == 0, again.stderr
    assert f"job {job}: 0 accepted, 3 duplicate, 1 rejected" in again.stdout
    assert f"every request was submitted before, in job {job}" in again.stderr
    rows = [json.loads(r) for r in tierline("results", job_of(again.stdout), cwd=cwd,
                                            home=home).stdout.splitlines()]
    assert [r["key"] for r in rows] == ["k0", "k1", "k2"]
    assert all(r["status"] == "done" and r["content"] for r in rows)


def test_the_banking77_example_runs_from_a_fresh_clone_on_its_shipped_slice(
        tmp_path: Path) -> None:
    shipped = subprocess.run(["git", "ls-files", "examples/banking77"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    if shipped:  # in a git checkout: the slice and its licence are committed
        assert {"examples/banking77/data/test-slice.csv", "examples/banking77/data/README.md",
                "examples/banking77/data/categories.json"} <= set(shipped)
    assert "CC BY 4.0" in (ROOT / "examples/banking77/data/README.md").read_text()
    run = tierline("classify", "--job-file", str(ROOT / "examples/banking77/job.yaml"),
                   "--limit", "60", cwd=tmp_path / "work", home=tmp_path / "home",
                   TIERLINE_DATA=str(tmp_path / "no-shared-data"),
                   TIERLINE_OUT_DIR=str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "banking77: 60 rows" in run.stdout and "accuracy:" in run.stdout
    out = next((tmp_path / "out").glob("banking77-*.jsonl"))
    assert len(out.read_text().splitlines()) == 60


def test_help_answers_within_0_3_s_without_loading_the_heavy_libraries(tmp_path: Path) -> None:
    env = newcomer_env(tmp_path / "home")
    argv = [sys.executable, "-X", "importtime", "-m", "tierline", "--help"]
    run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0 and "submit" in run.stdout and "classify" in run.stdout
    loaded = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    # CPU seconds, not wall-clock ones: the 0.3 s must hold on a loaded machine too, where
    # waiting for a core says nothing about the command (idle, it takes 0.11-0.16 s of both).
    cpu_s = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "tierline", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, check=True, timeout=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    assert min(cpu_s) <= 0.3, cpu_s


def test_sim_finds_its_default_policy_from_any_folder(tmp_path: Path) -> None:
    sim = subprocess.Popen([sys.executable, "-u", "-m", "tierline", "sim", "--port", "0"],
                           cwd=tmp_path, env=newcomer_env(tmp_path / "home"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline() + sim.stdout.readline()
        assert "models: sim-nano, sim-mid, sim-frontier" in first, first
        assert "listening on http://127.0.0.1:" in first, first
    finally:
        sim.terminate()
        sim.wait(timeout=10)
