"""The embedded stack gives the realtime lane workers of its own, as production does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tierline.config.settings import POLICY_DIR
from tierline.producer.client import FINAL, Client
from tierline.producer.embedded import embedded
from tierline.record.schema import requests
from tierline.router.policy import LANES, load_policy
from tierline.workers.app import SHADOW_QUEUE, app, queues_for

# Every simulated model answers at 20 ms a token: about 2 s for a long answer, a few
# milliseconds for a two-token one. No time to first token, no jitter, no cold start.
SLOW_TOKENS = ("default: {ttft_s: 0, per_token_s: 0.02, jitter_s: 0, cold_start_s: 0, "
               "answer_tokens: 120}\n")
LONG_PROMPT = "Summarise the minutes of the harbour committee, item by item. " * 25
FLOOD = 12  # more slow batch requests than the stack has threads (8)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("lanes")
    sim_config = tmp / "sim.yaml"
    sim_config.write_text(SLOW_TOKENS)
    with embedded(POLICY_DIR / "demo.yaml", database=tmp / "t.sqlite",
                  sim_config=sim_config) as rt:
        yield Client(rt)


def _statuses(client: Client, ids: list[str]) -> list[str]:
    with client.rt.engine.connect() as conn:
        return list(conn.execute(select(requests.c.status).where(requests.c.id.in_(ids)))
                    .scalars())


def _finished(client: Client, ids: list[str]) -> int:
    return sum(status in FINAL for status in _statuses(client, ids))


def _routed(client: Client, ids: list[str]) -> int:
    return sum(status != "accepted" for status in _statuses(client, ids))


def test_each_worker_consumes_its_own_lanes_queues_only(client: Client) -> None:
    host = socket.gethostname()
    policy = client.rt.policy
    others = tuple(lane for lane in LANES if lane != "realtime")
    expected = {
        f"embedded-realtime@{host}": sorted(queues_for(policy, "all", ("realtime",))),
        f"embedded-other@{host}": sorted(queues_for(policy, "all", others)),
    }
    queues: dict[str, list[str]] = {}
    for _ in range(5):  # a worker answers remote control once its consumer has started
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
        queues = {name: sorted(q["name"] for q in qs) for name, qs in replies.items()}
        if len(queues) == len(expected):
            break
    assert queues == expected


def test_a_batch_flood_does_not_delay_realtime(client: Client) -> None:
    # One submission each, so each request is its own bundle and takes a worker thread.
    flood = [client.submit(f"{LONG_PROMPT} ({i})", lane="batch") for i in range(FLOOD)]
    deadline = time.monotonic() + 10
    while _routed(client, flood) < FLOOD // 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # every thread free to take batch work has taken some
    assert _finished(client, flood) == 0, "the flood was answered too fast to flood anything"

    realtime = client.submit("Name a bird.", lane="realtime", max_output_tokens=2)
    submitted = time.monotonic()
    while not _finished(client, [realtime]) and time.monotonic() - submitted < 1.0:
        time.sleep(0.01)
    waited_s = time.monotonic() - submitted
    batch_done = _finished(client, flood)

    assert _finished(client, [realtime]), f"realtime still unanswered after {waited_s:.1f} s"
    assert batch_done <= FLOOD // 4, f"{batch_done} of {FLOOD} batch requests done first"


def test_shadow_calls_go_to_tier_workers_off_the_realtime_lane_and_to_shadow_workers() -> None:
    policy = load_policy(POLICY_DIR / "demo.yaml")
    assert SHADOW_QUEUE in queues_for(policy, "tier", ("standard", "batch"))
    assert SHADOW_QUEUE not in queues_for(policy, "tier", ("realtime",))
    assert SHADOW_QUEUE not in queues_for(policy, "router")
    assert queues_for(policy, "shadow") == [SHADOW_QUEUE]
