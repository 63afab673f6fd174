"""A provider answering 429 with a Retry-After longer than a countdown may wait: a batch
request is deferred on the record (``not_before``), not failed and not held in an ETA
message, and the watchdog sends it when the window opens; a real tier worker does the rest."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from tests.workers.scripted import completion, serve
from tierline.bench.children import spawn, stop
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.ledger import reconcile
from tierline.record.schema import attempts, requests, results
from tierline.router.policy import load_policy
from tierline.schedules.watchdog import watch
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
VISIBILITY_S = 6  # the countdown cap is half of it: 3 s
RETRY_AFTER_S = 6  # past that cap
pytestmark = pytest.mark.integration


def test_a_429_with_a_long_retry_after_waits_on_the_record_and_the_watchdog_sends_it_on(
        own_broker: str, own_postgres_url: str, tmp_path: Path, use_broker: Any) -> None:
    redis.Redis.from_url(own_broker).flushdb()
    opens_at: list[float] = []

    def reply(_model: str, _asked: str) -> tuple[Any, ...]:
        if not opens_at:
            opens_at.append(time.time() + RETRY_AFTER_S)
        if time.time() < opens_at[0]:
            return 429, {"error": {"message": "slow down"}}, {"retry-after": str(RETRY_AFTER_S)}
        return 200, completion("Madrid")

    with serve(reply) as url:
        env = {**os.environ, "TIERLINE_BROKER_URL": own_broker,
               "TIERLINE_DATABASE_URL": own_postgres_url, "TIERLINE_POLICY": str(POLICY),
               "TIERLINE_SIM_URL": url, "TIERLINE_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S)}
        worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "all", "-c", "2",
                        "--", "--without-mingle", "--without-gossip", "-n", "limited@%h"],
                       env, tmp_path / "worker.log", cwd=ROOT)
        try:
            rt = Runtime(Settings(own_broker, own_postgres_url, POLICY, visibility_s=VISIBILITY_S),
                         load_policy(POLICY), env)
            install(rt)
            use_broker(own_broker)
            report = Client(rt).submit_many(["what is the capital of Spain?"], lane="batch")
            waited_on_record = False
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                with rt.engine.connect() as conn:
                    not_before = conn.execute(select(requests.c.not_before)).scalar_one()
                    done = conn.execute(select(results.c.status)).scalars().all()
                waited_on_record |= not_before is not None
                if done:
                    break
                watch(rt)  # what beat does every 15 s
                time.sleep(0.5)
            with rt.engine.connect() as conn:
                ended = conn.execute(select(results.c.status, results.c.error)).all()
                tried = conn.execute(select(attempts.c.ok, attempts.c.error)
                                     .order_by(attempts.c.seq)).all()
                assert reconcile(conn).balanced
        finally:
            stop(worker)
            redis.Redis.from_url(own_broker).flushdb()
    log = (tmp_path / "worker.log").read_text()
    assert [tuple(e) for e in ended] == [("ok", None)], log[-3000:]
    assert waited_on_record, "the wait was held in a message, not kept on the request"
    assert time.time() >= opens_at[0]
    assert not tried[0].ok and "RateLimited" in tried[0].error and tried[-1].ok
    assert Client(rt).status(report.job_id).state == "completed"
