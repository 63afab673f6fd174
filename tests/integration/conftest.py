"""Fixtures for the integration tests: the simulator and real worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def stack(redis_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, str]]:
    """The simulator, one router worker and one tier worker, as separate processes."""
    logs = tmp_path_factory.mktemp("logs")
    sim = _spawn([sys.executable, "-m", "sim", "--policy", str(POLICY), "--port", "0"],
                 dict(os.environ), logs / "sim.log")
    match = None
    deadline = time.monotonic() + 20
    while match is None and time.monotonic() < deadline and sim.poll() is None:
        time.sleep(0.05)
        match = re.search(r"listening on (http://\S+)", (logs / "sim.log").read_text())
    assert match, f"simulator did not start: {(logs / 'sim.log').read_text()!r}"
    env = {**os.environ, "TIERLINE_BROKER_URL": redis_url, "TIERLINE_DATABASE_URL": postgres_url,
           "TIERLINE_POLICY": str(POLICY), "TIERLINE_SIM_URL": match.group(1)}
    tierline = [sys.executable, "-m", "tierline", "worker"]
    workers = [
        _spawn([*tierline, "--role", "router", "-c", "2", "--", "--without-mingle",
                "--without-gossip", "-n", "router@%h"], env, logs / "router.log"),
        _spawn([*tierline, "--role", "tier", "-c", "4", "--", "--without-mingle",
                "--without-gossip", "-n", "tier@%h"], env, logs / "tier.log"),
    ]
    try:
        yield env
    finally:
        for proc in workers:
            _stop(proc)
        _stop(sim)
        for log in logs.iterdir():
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name}\n{text[-4000:]}")




def _use_broker(url: str) -> None:
    """Point this process's producer at ``url``: Celery keeps a connection pool and a producer
    pool per app, so changing the setting alone would keep publishing to the old broker."""
    from workers.app import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="session")
def use_broker() -> object:
    return _use_broker
