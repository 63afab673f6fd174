"""A streamed request's text goes from the tier worker process to a reader through Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.schema import jobs
from tierline.router.policy import load_policy
from tierline.workers.engine.relay import Event
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"  # kind: single, so streamed requests are relayed
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(stack: dict[str, str], use_broker: Any) -> Iterator[Client]:
    """A producer in this process whose relay is the workers' Redis."""
    from tierline.workers.app import app

    broker = stack["TIERLINE_BROKER_URL"]
    settings = Settings(broker, stack["TIERLINE_DATABASE_URL"], POLICY, redis_url=broker)
    rt = Runtime(settings, load_policy(POLICY), dict(stack))
    saved_rt, saved_broker = install(rt), str(app.conf.broker_url)
    use_broker(broker)
    try:
        yield Client(rt)
    finally:
        use_broker(saved_broker)
        install(saved_rt)


def _follow(client: Client, request_id: str, timeout_s: float = 30.0) -> list[Event]:
    events: list[Event] = []
    cursor, deadline = "", time.monotonic() + timeout_s
    while not any(e.kind == "end" for e in events) and time.monotonic() < deadline:
        got, cursor = client.rt.relay.read(request_id, cursor, 1.0)
        events += got
    return events


def test_a_streamed_answer_is_relayed_piece_by_piece_then_ended(client: Client) -> None:
    report = client.submit_many([{"prompt": "Describe the sea at night in a few sentences.",
                                  "stream": True}], lane="realtime")
    events = _follow(client, report.request_ids[0])
    client.wait(report.job_id, timeout_s=30)
    row = next(iter(client.results(report.job_id)))
    assert row["status"] == "done", row
    assert [e.kind for e in events[:1]] == ["begin"] and events[0].text == row["model"]
    assert events[-1].kind == "end" and [e.kind for e in events].count("end") == 1
    pieces = [e.text for e in events if e.kind == "text"]
    assert len(pieces) > 1  # the worker streamed the call, not one whole answer
    assert "".join(pieces) == row["content"]


def test_a_request_that_does_not_ask_to_stream_is_not_relayed(client: Client) -> None:
    report = client.submit_many(["What is 3 + 4?"], lane="realtime")
    client.wait(report.job_id, timeout_s=30)
    assert next(iter(client.results(report.job_id)))["status"] == "done"
    assert client.rt.relay.read(report.request_ids[0], "", 0.05) == ([], "")


def test_client_stream_yields_the_pieces_the_worker_process_relays(client: Client) -> None:
    pieces = list(client.stream("Describe a lighthouse in a storm."))
    assert len(pieces) > 1
    with client.rt.engine.connect() as conn:  # Client.stream names its jobs "stream"
        job = conn.execute(select(jobs.c.id).where(jobs.c.name == "stream")
                           .order_by(jobs.c.created_at.desc()).limit(1)).scalar_one()
    assert "".join(pieces) == next(iter(client.results(job)))["content"]
