"""Fixtures for the integration tests: the simulator and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tierline.bench.children import sim_url, spawn, stop

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"


def stop_together(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop the children at once: a worker takes over a second to shut down, and none waits
    on another's going."""
    with ThreadPoolExecutor(max(len(children), 1)) as pool:
        list(pool.map(stop, children))


@pytest.fixture(scope="session")
def stack(redis_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, str]]:
    """The simulator, one router worker and one tier worker, as separate processes."""
    logs = tmp_path_factory.mktemp("logs")
    sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--port", "0"],
                dict(os.environ), logs / "sim.log", cwd=ROOT)
    url = sim_url(logs / "sim.log", sim)
    env = {**os.environ, "TIERLINE_BROKER_URL": redis_url, "TIERLINE_DATABASE_URL": postgres_url,
           "TIERLINE_POLICY": str(POLICY), "TIERLINE_SIM_URL": url}
    tierline = [sys.executable, "-m", "tierline", "worker"]
    workers = [
        spawn([*tierline, "--role", "router", "-c", "2", "--", "--without-mingle",
               "--without-gossip", "-n", "router@%h"], env, logs / "router.log", cwd=ROOT),
        spawn([*tierline, "--role", "tier", "-c", "4", "--", "--without-mingle",
               "--without-gossip", "-n", "tier@%h"], env, logs / "tier.log", cwd=ROOT),
    ]
    try:
        yield env
    finally:
        stop_together([*workers, sim])
        for log in logs.iterdir():
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name}\n{text[-4000:]}")




def _use_broker(url: str) -> None:
    """Point this process's producer at ``url`` (and its connection pools: tierline.workers.app)."""
    from tierline.workers.app import use_broker

    use_broker(url)


@pytest.fixture(scope="session")
def use_broker() -> object:
    return _use_broker


@pytest.fixture()
def own_broker(redis_url: str) -> Iterator[str]:
    """A Redis database of the test's own (6), so the session's ``stack`` workers, which
    consume every queue of ``redis_url``, never take its messages; emptied before and after,
    and this process's producer pointed back at ``redis_url`` afterwards.
    ``TIERLINE_TEST_OWN_REDIS_DB`` names another database (when db 6 is someone else's)."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("TIERLINE_TEST_OWN_REDIS_DB", "6")
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        _use_broker(redis_url)
