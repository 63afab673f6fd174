"""The gateway on the distributed stack: Postgres, Redis, router and tier worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from tests.conftest import serve_gateway
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.schema import jobs, requests
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def base(stack: dict[str, str], use_broker: Any) -> Iterator[tuple[str, Client]]:
    from tierline.workers.app import app

    broker = stack["TIERLINE_BROKER_URL"]
    settings = Settings(broker, stack["TIERLINE_DATABASE_URL"], POLICY, redis_url=broker)
    rt = Runtime(settings, load_policy(POLICY), dict(stack))
    saved_rt, saved_broker = install(rt), str(app.conf.broker_url)
    use_broker(broker)
    try:
        client = Client(rt)
        with serve_gateway(client) as url:
            yield url, client
    finally:
        use_broker(saved_broker)
        install(saved_rt)


def test_a_realtime_call_is_answered_and_its_job_completes(base: tuple[str, Client]) -> None:
    url, client = base
    sdk = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    answer = sdk.chat.completions.create(model="auto", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    ours = answer.model_extra["tierline"]  # type: ignore[index]
    deadline = time.monotonic() + 10
    while True:
        with client.rt.engine.connect() as conn:
            job = conn.execute(select(jobs.c.status, jobs.c.accepted)
                               .where(jobs.c.id == ours["job_id"])).one()
            enqueued = conn.execute(select(requests.c.enqueued_at).where(
                requests.c.id == ours["request_id"])).scalar()
        if (job.status == "completed" and enqueued) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (job.status, job.accepted) == ("completed", 1) and enqueued


def test_a_repeated_key_returns_the_earlier_answer(base: tuple[str, Client]) -> None:
    url, _ = base
    key = {"Idempotency-Key": f"distributed-{time.time_ns()}"}
    body = {"model": "auto", "messages": HELLO}
    first = httpx.post(f"{url}/chat/completions", json=body, headers=key, timeout=30).json()
    again = httpx.post(f"{url}/chat/completions", json=body, headers=key, timeout=30).json()
    assert again["tierline"] == first["tierline"]
    assert again["choices"] == first["choices"]


def test_many_calls_at_once_are_each_answered_once(base: tuple[str, Client]) -> None:
    url, client = base

    def ask(number: int) -> dict[str, Any]:
        body = {"model": "auto", "messages": [{"role": "user",
                                               "content": f"What is {number} + 1?"}]}
        # the standard lane: a loaded CI box must not turn a slow answer into a 504 here
        response = httpx.post(f"{url}/chat/completions", json=body, timeout=150,
                              headers={"X-Tierline-Lane": "standard"})
        assert response.status_code == 200, response.text
        return dict(response.json()["tierline"])

    with ThreadPoolExecutor(24) as pool:  # enough waiting calls for ingress to gather them
        answered = list(pool.map(ask, range(48)))
    ids = [a["request_id"] for a in answered]
    assert len(set(ids)) == 48
    with client.rt.engine.connect() as conn:
        statuses = set(conn.execute(select(requests.c.status)
                                    .where(requests.c.id.in_(ids))).scalars())
    assert statuses == {"done"}


def test_calls_go_on_after_the_database_dropped_every_connection(
        base: tuple[str, Client]) -> None:
    url, client = base
    body = {"model": "auto", "messages": HELLO}
    assert httpx.post(f"{url}/chat/completions", json=body, timeout=30).status_code == 200
    with client.rt.engine.connect() as conn:  # as a restart would: every other session ends
        conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for _ in range(3):
        answer = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200, answer.text


def test_realtime_calls_are_routed_by_the_gateway_and_recorded_as_the_router_would(
        base: tuple[str, Client]) -> None:
    from sqlalchemy import func

    from tierline.record import records
    from tierline.record.schema import attempts, charges, decisions, results
    from tierline.workers import routing

    url, client = base

    def ask(number: int) -> str:
        body = {"model": "auto", "messages": [{"role": "user",
                                               "content": f"Explain {number} in a line."}]}
        response = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return str(response.json()["tierline"]["request_id"])

    with ThreadPoolExecutor(10) as pool:  # enough waiting calls for ingress to gather them
        ids = list(pool.map(ask, range(20)))
    with client.rt.engine.connect() as conn:
        stored = records.load_decisions(conn, ids)
        loaded = records.load_requests(conn, ids)
        statuses = set(conn.execute(select(requests.c.status)
                                    .where(requests.c.id.in_(ids))).scalars())
        paid = conn.execute(select(func.sum(attempts.c.usd)).where(
            attempts.c.request_id.in_(ids))).scalar()
        charged = conn.execute(select(func.sum(charges.c.usd)).where(
            charges.c.request_id.in_(ids))).scalar()
        billed = conn.execute(select(func.sum(results.c.usd)).where(
            results.c.request_id.in_(ids))).scalar()
        # decided in the accepting transaction, not later by the router worker
        decided_at_once = conn.execute(select(func.count()).select_from(
            decisions.join(requests, requests.c.id == decisions.c.request_id)).where(
            decisions.c.request_id.in_(ids),
            decisions.c.decided_at == requests.c.submitted_at)).scalar()
    assert statuses == {"done"} and decided_at_once == len(ids)
    again = {d.request_id: d for d in routing.decide_now(client.rt, loaded, time.time())}
    for request_id in ids:
        mine, routers = stored[request_id], again[request_id]
        assert (mine.tier, mine.model, mine.band, mine.reasons) == (
            routers.tier, routers.model, routers.band, routers.reasons)
    assert paid == charged == billed and paid > 0
