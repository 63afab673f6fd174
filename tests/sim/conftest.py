"""Fixtures: a simulator in a separate process (real sockets) and data paths."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

POLICY = """
tiers:
  t0: [nano]
  t1: [mid, sim-limited, sim-broken, sim-cold, sim-slow]
  t2: [frontier]
models:
  nano: {name: sim-nano, usd_per_1m_input: 0.1, usd_per_1m_output: 0.4}
  mid: {name: sim-mid, usd_per_1m_input: 1, usd_per_1m_output: 4}
  frontier: {name: sim-frontier, usd_per_1m_input: 5, usd_per_1m_output: 20}
  sim-limited: {usd_per_1m_input: 1, usd_per_1m_output: 4, limits: {requests_per_minute: 2}}
  sim-broken: {usd_per_1m_input: 1, usd_per_1m_output: 4}
  sim-cold: {usd_per_1m_input: 1, usd_per_1m_output: 4}
  sim-slow: {usd_per_1m_input: 1, usd_per_1m_output: 4}
"""

CONFIG = """
seed: 3
default: {cold_start_s: 0, jitter_s: 0}
models:
  sim-broken: {error_rate: 1.0}
  sim-cold: {cold_start_s: 0.4, idle_before_cold_s: 0.6, ttft_s: 0.01}
  sim-slow: {ttft_s: 0.2, per_token_s: 0}
"""


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder (TIERLINE_DATA, default ../shared/data from the repo root)."""
    return Path(os.environ.get("TIERLINE_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A test policy with special-behaviour models, and its sim config."""
    folder = tmp_path_factory.mktemp("sim")
    policy, config = folder / "policy.yaml", folder / "sim.yaml"
    policy.write_text(POLICY)
    config.write_text(CONFIG)
    return policy, config


def spawn(*args: str | Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m tierline.sim --port 0 ARGS`` and return it with its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierline.sim", "--port", "0", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("tierline sim listening on "):
            return proc, line.split()[-1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"sim did not start: {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM and wait; the simulator exits cleanly."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def sim_url(sim_files: tuple[Path, Path]) -> Iterator[str]:
    """URL of a simulator process serving the test policy and config."""
    proc, url = spawn("--policy", sim_files[0], "--config", sim_files[1])
    yield url
    stop(proc)


@pytest.fixture
def spawn_sim() -> Iterator[Callable[..., str]]:
    """Start extra simulator processes for one test; stopped after it."""
    procs: list[subprocess.Popen[str]] = []

    def _spawn(*args: str | Path) -> str:
        proc, url = spawn(*args)
        procs.append(proc)
        return url

    yield _spawn
    for proc in procs:
        stop(proc)
