"""The watchdog, on real Postgres: a request whose message was lost is sent again once it
has been still for longer than its lane allows, once per stall; a request deferred past a
countdown's reach is sent when its wait is over; a request past its deadline ends expired,
saying when, with what it paid kept as its spend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record import records
from tierline.record.ledger import reconcile
from tierline.record.schema import jobs, requests, results
from tierline.router.policy import load_policy
from tierline.schedules.watchdog import stall_after_s, watch
from tierline.workers import routing
from tierline.workers.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"


@pytest.fixture()
def rt(own_postgres_url: str) -> Runtime:
    return Runtime(Settings("memory://", own_postgres_url, POLICY), load_policy(POLICY), {})


def _routed_and_lost(rt: Runtime, n: int) -> list[str]:
    """Requests accepted, enqueued and routed, whose bundles were then lost (as with a Redis
    restart): nothing will ever deliver them."""
    ids = Client(rt).submit_many([f"question {i}" for i in range(n)], lane="batch").request_ids
    routing.route(rt, ids, lambda *_: None)
    return ids


def _touched(rt: Runtime, ids: list[str]) -> list[float]:
    with rt.engine.connect() as conn:
        return [t for (t,) in conn.execute(select(requests.c.touched_at)
                                           .where(requests.c.id.in_(ids)))]


def test_a_request_whose_bundle_was_lost_is_sent_again_once_it_has_been_still_too_long(
        rt: Runtime) -> None:
    ids = _routed_and_lost(rt, 3)
    assert watch(rt).resent == 0  # just routed: not stalled
    later = time.time() + stall_after_s(rt.policy, "batch", 60.0) + 1
    assert watch(rt, now_s=later).resent == 3
    assert _touched(rt, ids) == [later] * 3  # marked as moved
    assert watch(rt, now_s=later + 1).resent == 0  # once per stall, not once per pass


def test_a_request_deferred_past_a_countdowns_reach_is_sent_when_its_wait_is_over(
        rt: Runtime) -> None:
    [rid] = _routed_and_lost(rt, 1)
    now = time.time()
    with rt.engine.begin() as conn:
        records.defer(conn, [rid], not_before=now + 100, now_s=now)
    assert watch(rt, now_s=now + 50).resent == 0
    assert watch(rt, now_s=now + 101).resent == 1
    with rt.engine.connect() as conn:
        assert conn.execute(select(requests.c.not_before)).scalar_one() is None


def test_a_request_past_its_deadline_ends_expired_saying_when(rt: Runtime) -> None:
    ids = _routed_and_lost(rt, 2)
    deadline = time.time() - 3600
    with rt.engine.begin() as conn:
        conn.execute(update(requests).where(requests.c.id == ids[0])
                     .values(deadline_at=deadline))
    done = watch(rt)
    assert (done.expired, done.resent) == (1, 0)
    with rt.engine.connect() as conn:
        status, error = conn.execute(select(results.c.status, results.c.error)).one()
        assert conn.execute(select(requests.c.status).where(requests.c.id == ids[0])
                            ).scalar_one() == "expired"
        assert reconcile(conn).balanced
    assert status == "expired"
    assert error == "Expired: deadline passed at " + time.strftime(
        "%Y-%m-%d %H:%M:%S", time.gmtime(deadline)) + " UTC"
    assert watch(rt).expired == 0  # once


def test_a_request_just_past_its_deadline_is_left_to_a_task_that_may_still_hold_it(
        rt: Runtime) -> None:
    [rid] = _routed_and_lost(rt, 1)
    with rt.engine.begin() as conn:
        conn.execute(update(requests).values(deadline_at=time.time() - 1))
    assert watch(rt).expired == 0  # a live task may be writing its answer
    assert watch(rt, now_s=time.time() + 61).expired == 1


def test_a_job_whose_last_bundles_ended_together_is_completed(rt: Runtime) -> None:
    _routed_and_lost(rt, 2)
    with rt.engine.begin() as conn:  # both answered; neither bundle saw the other's commit
        conn.execute(update(requests).values(status="done"))

    def state() -> str:
        with rt.engine.connect() as conn:
            return str(conn.execute(select(jobs.c.status)).scalar_one())

    assert state() == "in_progress"
    watch(rt)
    assert state() == "completed"
