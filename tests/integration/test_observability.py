"""What an operator sees, on real processes: a tier backlog that no worker consumes is listed,
with its depth, by Flower's API and broker page (behind its login) and by ``/metrics``; tier
workers serve their prefork children's counters; bundle messages carry readable names."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.chromium import distinct_colours, dump_dom, screenshot
from tests.conftest import _fresh_database
from tests.integration.conftest import stop_together
from tierline.bench.children import sim_url, spawn
from tierline.router.policy import load_policy
from tierline.workers.app import all_queues

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
QUEUES = all_queues(load_policy(POLICY))
LOGIN = ("ops", "a-long-secret")
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{what}: not after {timeout_s} s (last: {last!r})")


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def ops(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Simulator, a router worker on every lane, a tier worker on realtime only (serving its
    metrics), Flower with a login, and the metrics exporter; batch work then waits in a tier
    queue that nobody consumes. The broker keys carry a prefix of this run's own."""
    logs = tmp_path_factory.mktemp("ops-logs")
    prefix = f"obs-{uuid.uuid4().hex[:8]}:"
    ports = {name: _free_port() for name in ("flower", "exporter", "worker")}
    with _fresh_database() as database_url:
        children = []
        sim = spawn([sys.executable, "-m", "tierline.sim", "--policy", str(POLICY), "--port", "0"],
                    dict(os.environ), logs / "sim.log", cwd=ROOT)
        children.append(sim)
        env = {**os.environ, "TIERLINE_BROKER_URL": redis_url,
               "TIERLINE_DATABASE_URL": database_url, "TIERLINE_POLICY": str(POLICY),
               "TIERLINE_SIM_URL": sim_url(logs / "sim.log", sim),
               "TIERLINE_BROKER_KEYPREFIX": prefix,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        worker = [sys.executable, "-m", "tierline", "worker"]
        quiet = ["--without-mingle", "--without-gossip", "-E"]  # -E: task events for Flower
        try:
            children.append(spawn([*worker, "--role", "router", "-c", "1", "--", *quiet,
                                   "-n", f"router-{prefix}@%h"], env, logs / "router.log",
                                  cwd=ROOT))
            metrics_dir = tmp_path_factory.mktemp("multiproc")
            children.append(spawn([*worker, "--role", "tier", "--lane", "realtime", "-c", "2",
                                   "--", *quiet, "-n", f"realtime-{prefix}@%h"],
                                  {**env, "TIERLINE_METRICS_PORT": str(ports["worker"]),
                                   "TIERLINE_METRICS_HOST": "127.0.0.1",
                                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                                  logs / "tier.log", cwd=ROOT))
            children.append(spawn([sys.executable, "-m", "celery", "-A",
                                   "tierline.workers.flower_queues",
                                   "flower", "--address=127.0.0.1", f"--port={ports['flower']}"],
                                  {**env, "FLOWER_BASIC_AUTH": ":".join(LOGIN)},
                                  logs / "flower.log", cwd=ROOT))
            children.append(spawn([sys.executable, "-m", "tierline", "metrics", "--port",
                                   str(ports["exporter"])], env, logs / "exporter.log", cwd=ROOT))
            yield {"env": env, "prefix": prefix, "ports": ports, "logs": logs,
                   "redis": redis.Redis.from_url(redis_url)}
        finally:
            stop_together(children)
            for log in logs.iterdir():
                text = log.read_text(errors="replace")
                if "Traceback" in text:
                    print(f"--- {log.name}\n{text[-4000:]}")


def _submit(ops: dict[str, Any], tmp_path: Path, lane: str, n: int, *, wait: bool) -> None:
    lines = [json.dumps({"prompt": f"What is {i} + {i}? ({lane})", "lane": lane})
             for i in range(n)]
    (tmp_path / f"{lane}.jsonl").write_text("\n".join(lines) + "\n")
    import subprocess

    run = subprocess.run([sys.executable, "-m", "tierline", "submit", f"{lane}.jsonl",
                          "--wait" if wait else "--no-wait"], cwd=tmp_path, env=ops["env"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def backlog(ops: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Batch requests routed into tier queues that no worker consumes: their depths."""
    _submit(ops, tmp_path_factory.mktemp("batch"), "batch", 12, wait=False)
    names = [q for q in QUEUES if q.endswith(".batch") and q.startswith("tier.")]

    def depths() -> dict[str, int]:
        found = {q: int(ops["redis"].llen(ops["prefix"] + q)) for q in names}
        return found if sum(found.values()) and not ops["redis"].llen(
            ops["prefix"] + "ingress.batch") else {}

    return _wait_for("batch bundles waiting in a tier queue", depths)


def test_flower_lists_every_queue_with_the_backlog_behind_its_login(
        ops: dict[str, Any], backlog: dict[str, int]) -> None:
    url = f"http://127.0.0.1:{ops['ports']['flower']}"
    _wait_for("Flower", lambda: httpx.get(url + "/healthcheck", timeout=2).status_code == 200)
    refused = httpx.get(url + "/api/queues/length", timeout=5)
    assert refused.status_code == 401

    def lengths() -> dict[str, int]:
        answer = httpx.get(url + "/api/queues/length", auth=LOGIN, timeout=10)
        answer.raise_for_status()
        return {q["name"]: q["messages"] for q in answer.json()["active_queues"]}

    listed = _wait_for("Flower's queue lengths", lengths)
    assert set(QUEUES) <= set(listed), sorted(listed)
    for queue, depth in backlog.items():
        assert listed[queue] == depth, (queue, listed)
    assert sum(listed[q] for q in backlog) > 0


def test_flowers_broker_page_shows_every_tier_queue(ops: dict[str, Any],
                                                     backlog: dict[str, int],
                                                     tmp_path: Path) -> None:
    port = ops["ports"]["flower"]
    _wait_for("Flower", lambda: httpx.get(f"http://127.0.0.1:{port}/healthcheck",
                                          timeout=2).status_code == 200)
    page = f"http://{LOGIN[0]}:{LOGIN[1]}@127.0.0.1:{port}/broker"
    dom = dump_dom(page)
    for queue in QUEUES:
        assert f">{queue}<" in dom, queue
    out = Path(os.environ.get("TIERLINE_TEST_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    shot = screenshot(page, out / "flower-broker.png", height=1100)
    assert distinct_colours(shot) > 20


def test_metrics_show_the_backlog_and_the_workers_counts(ops: dict[str, Any],
                                                         backlog: dict[str, int],
                                                         tmp_path: Path) -> None:
    exporter = f"http://127.0.0.1:{ops['ports']['exporter']}/metrics"
    text = _wait_for("the exporter", lambda: httpx.get(exporter, timeout=10).text)
    depth = _samples(text, "tierline_queue_depth")
    assert {dict(k)["queue"] for k in depth} == set(QUEUES)
    for queue, n in backlog.items():
        assert depth[(("queue", queue),)] == n
    assert _samples(text, "tierline_breaker_open")  # one per model, read from Redis

    _submit(ops, tmp_path, "realtime", 3, wait=True)
    worker = f"http://127.0.0.1:{ops['ports']['worker']}/metrics"
    text = _wait_for("the tier worker's metrics", lambda: (
        t := httpx.get(worker, timeout=10).text) and "tierline_attempts_total{" in t and t)
    finished = _samples(text, "tierline_requests_finished_total")
    assert sum(v for k, v in finished.items() if dict(k)["lane"] == "realtime"
               and dict(k)["status"] == "ok") == 3
    assert sum(_samples(text, "tierline_attempts_total").values()) >= 3
    assert sum(_samples(text, "tierline_usd_total").values()) > 0
    latency = _samples(text, "tierline_request_latency_seconds_count")
    assert latency[(("lane", "realtime"),)] == 3


def test_bundle_messages_name_their_tier_lane_and_size(ops: dict[str, Any],
                                                       backlog: dict[str, int]) -> None:
    queue = next(q for q, n in backlog.items() if n)
    raw = ops["redis"].lindex(ops["prefix"] + queue, 0)
    headers = json.loads(raw)["headers"]
    tier, lane = queue.split(".")[1:]
    assert headers["task"] == "tierline.call_models"
    assert headers["shadow"].startswith(f"call_models[{tier}.{lane} x")
    assert f"tier={tier} lane={lane} bundle=" in headers["argsrepr"]


def test_flowers_task_list_names_the_tier_lane_and_bundle_size(ops: dict[str, Any],
                                                               tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{ops['ports']['flower']}"
    _wait_for("Flower", lambda: httpx.get(url + "/healthcheck", timeout=2).status_code == 200)
    time.sleep(1.0)  # Flower's event receiver is connected before the work is sent
    _submit(ops, tmp_path, "realtime", 2, wait=True)

    def bundles() -> list[dict[str, Any]]:
        tasks = httpx.get(url + "/api/tasks", auth=LOGIN, timeout=10).json()
        return [t for t in tasks.values() if (t.get("name") or "").startswith("call_models[")]

    seen = _wait_for("a named bundle in Flower's task list", bundles)
    assert any(t["name"].startswith("call_models[t") and ".realtime x" in t["name"]
               for t in seen), seen
    assert any("lane=realtime bundle=" in (t.get("args") or "") for t in seen), seen
