"""Metrics: the record layer counts what it writes, a scrape reads queue depths, absorber use
and breakers from real Redis, the gateway's ASGI app serves the text format, bundle messages
and Flower's queue list say what they hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, publish_nowhere, redis_or_skip
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.config.settings import POLICY_DIR
from tierline.metrics import metrics_app
from tierline.router.live.absorber import Limits
from tierline.router.live.breaker import FAILS_TO_OPEN
from tierline.router.policy import load_policy
from tierline.workers.app import all_queues
from tierline.workers.engine.health import FAILED, RedisHealthStore, Seen
from tierline.workers.flower_queues import show_every_queue
from tierline.workers.metrics_cluster import ClusterCollector
from tierline.workers.stores.absorber_redis import RedisAbsorberStore
from tierline.workers.task_labels import label

POLICY = load_policy(POLICY_DIR / "demo.yaml")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    def reply(model: str, asked: str) -> tuple[int, dict[str, Any]]:
        if "broken" in asked:
            return 400, {"error": {"message": "this model refuses"}}
        return 200, completion("refund")

    with serve(reply) as url:
        yield url


def test_the_record_layer_counts_requests_attempts_tokens_and_latency(
        tmp_path: Path, models_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "cascade", "confidence_bar": 0.0}))
    before = {
        "accepted": _value("tierline_requests_accepted_total", lane="batch"),
        "ok": sum(_value("tierline_requests_finished_total", lane="batch", tier=t, status="ok")
                  for t in POLICY.tier_names),
        "failed": sum(_value("tierline_requests_finished_total", lane="batch", tier=t,
                             status="failed") for t in POLICY.tier_names),
        "latency": _value("tierline_request_latency_seconds_count", lane="batch"),
        "calls": _value("tierline_call_latency_seconds_count", lane="batch"),
    }
    route_here(rt, [{"prompt": f"easy {n}"} for n in range(3)] + [{"prompt": "broken"}])
    assert _value("tierline_requests_accepted_total", lane="batch") - before["accepted"] == 4
    ok = sum(_value("tierline_requests_finished_total", lane="batch", tier=t, status="ok")
             for t in POLICY.tier_names)
    failed = sum(_value("tierline_requests_finished_total", lane="batch", tier=t,
                        status="failed") for t in POLICY.tier_names)
    assert (ok - before["ok"], failed - before["failed"]) == (3, 1)
    assert _value("tierline_request_latency_seconds_count", lane="batch") - \
        before["latency"] == 4
    assert _value("tierline_call_latency_seconds_count", lane="batch") - before["calls"] >= 4
    assert _value("tierline_attempts_total", model="sim-nano", outcome="Rejected") >= 1
    assert _value("tierline_tokens_total", model="sim-nano", tenant="default",
                  direction="in") >= 3 * 40
    assert _value("tierline_usd_total", model="sim-nano", tenant="default") > 0


def test_a_scrape_reads_depths_absorber_use_and_breakers_from_redis() -> None:
    client = redis_or_skip(REDIS_URL)
    prefix = f"metrics-test-{uuid.uuid4().hex[:8]}:"
    now_s = time.time()
    try:
        client.rpush(prefix + "tier.t1.batch", "a", "b", "c")
        client.rpush(prefix + "ingress.realtime", "x")
        absorber = RedisAbsorberStore(client, prefix=prefix + "absorber")
        limited = Limits(tokens_per_day=10_000)
        held = absorber.reserve("sim-nano", limited, 1200, now_s=now_s)
        absorber.settle(held, 1000, now_s=now_s)
        health = RedisHealthStore(client)
        health.record([Seen("sim-mid", FAILED)] * FAILS_TO_OPEN, now_s)

        collector = ClusterCollector(client, lambda: all_queues(POLICY), POLICY,
                                     clock=lambda: now_s, key_prefix=prefix,
                                     absorber_prefix=prefix + "absorber")
        families = {f.name: f for f in collector.collect()}
        depth = {s.labels["queue"]: s.value for s in families["tierline_queue_depth"].samples}
        assert set(depth) == set(all_queues(POLICY))
        assert depth["tier.t1.batch"] == 3 and depth["ingress.realtime"] == 1
        assert depth["tier.t0.batch"] == 0
        breaker = {s.labels["model"]: s.value for s in families["tierline_breaker_open"].samples}
        assert breaker["sim-mid"] == 1.0 and breaker["sim-nano"] == 0.0
        used = {s.labels["model"]: s.value
                for s in families["tierline_absorber_tokens_today"].samples}
        assert used["sim-nano"] == 1000
    finally:
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        client.delete(RedisHealthStore.key("sim-mid"))


def test_the_gateway_mounts_metrics_as_an_asgi_app() -> None:
    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=metrics_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get("/metrics")

    answer = asyncio.run(scrape())
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(answer.text)}
    assert {"tierline_requests_accepted", "tierline_attempts"} <= names


@pytest.mark.parametrize(("task", "queue", "ids", "kwargs", "shown"), [
    ("tierline.call_models", "tier.t1.batch", [f"r{i}" for i in range(64)], {"resumed": False},
     ("call_models[t1.batch x64]", "tier=t1 lane=batch bundle=64 ids=[r0, r1, r2, …]")),
    ("tierline.call_models", "tier.t0.realtime", ["a"], {"resumed": True},
     ("call_models[t0.realtime x1]", "tier=t0 lane=realtime bundle=1 resumed ids=[a]")),
    ("tierline.route_requests", "ingress.standard", ["a", "b"], {},
     ("route_requests[standard x2]", "lane=standard bundle=2 ids=[a, b]")),
    ("tierline.daily_report", "schedules", [], {}, None),
])
def test_messages_are_named_by_tier_lane_and_bundle_size(task: str, queue: str, ids: list[str],
                                                         kwargs: dict[str, Any],
                                                         shown: tuple[str, str] | None) -> None:
    assert label(task, queue, [ids] if ids else [], kwargs) == shown


def test_flower_lists_the_policys_queues_beside_the_workers() -> None:
    class Handler:
        def get_active_queue_names(self) -> list[str]:
            return ["ingress.standard", "other"]

    show_every_queue(Handler, lambda: all_queues(POLICY))
    show_every_queue(Handler, lambda: all_queues(POLICY))  # applied once
    names = Handler().get_active_queue_names()
    assert names == sorted({"other", *all_queues(POLICY)})
    assert "tier.t2.batch" in names


def test_requests_a_cancelled_job_ends_are_counted_as_finished(tmp_path: Path,
                                                               models_url: str) -> None:
    from tierline.producer.client import Client
    from tierline.record.jobs import halt

    rt = runtime(tmp_path, models_url, demo_policy({"kind": "cascade", "confidence_bar": 0.0}))
    client = Client(rt, publish=publish_nowhere)
    before = _value("tierline_requests_finished_total", lane="standard", tier="none",
                    status="cancelled")
    job = client.submit_many([{"prompt": f"later {n}"} for n in range(5)], lane="standard")
    with rt.engine.begin() as conn:
        assert halt(conn, job.job_id, "cancelled", time.time()) == 5
    assert _value("tierline_requests_finished_total", lane="standard", tier="none",
                  status="cancelled") - before == 5
