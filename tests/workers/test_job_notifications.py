"""Job notifications on Postgres: sent when the transaction commits, never on a rollback;
a waiter's doorbell rings for its own job only, and sleeps when it cannot listen."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tierline.client import _Doorbell
from workers.db import JOBS_CHANNEL, engine_for, notify_jobs


def _ids(*names: str) -> list[str]:
    """Job ids of this test only: the session's database may have workers notifying too."""
    run = uuid.uuid4().hex[:8]
    return [f"{run}-{name}" for name in names]


def _received(conn: psycopg.Connection[tuple[object, ...]], ours: list[str]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3) if n.payload[:8] == ours[0][:8]]


def test_a_job_is_notified_once_on_commit_and_not_on_rollback(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    a, b, rolled_back = ids = _ids("a", "b", "rolled-back")
    with psycopg.connect(postgres_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {JOBS_CHANNEL}")
        with engine.connect() as conn:
            transaction = conn.begin()
            notify_jobs(conn, [rolled_back])
            transaction.rollback()
        assert _received(listener, ids) == []
        with engine.begin() as conn:
            notify_jobs(conn, [b, a, None, b])
            assert _received(listener, ids) == []  # not before the commit
            notify_jobs(conn, [a])  # the same job again in the same transaction
        assert _received(listener, ids) == [a, b]


def test_sqlite_has_no_notifications_and_needs_none() -> None:
    with engine_for("sqlite://").begin() as conn:
        notify_jobs(conn, ["job-a"])  # nothing is sent: SQLite's waiters poll


def test_a_waiter_that_cannot_listen_sleeps_instead(postgres_url: str) -> None:
    missing = engine_for(postgres_url.rsplit("/", 1)[0] + "/no_such_database")
    doorbell = _Doorbell(missing, "job-a")
    try:
        started = time.monotonic()
        doorbell.wait(0.2)
        assert 0.19 < time.monotonic() - started < 1.0
    finally:
        doorbell.close()


@pytest.mark.parametrize("others", [0, 1])
def test_a_doorbell_rings_for_its_own_job_only(postgres_url: str, others: int) -> None:
    engine = engine_for(postgres_url)
    ours, other = _ids("ours", "other")
    doorbell = _Doorbell(engine, ours)
    try:
        with engine.begin() as conn:
            notify_jobs(conn, [other] * others + [ours])
        started = time.monotonic()
        doorbell.wait(5.0)
        assert time.monotonic() - started < 0.5
        with engine.begin() as conn:
            notify_jobs(conn, [other])
        started = time.monotonic()
        doorbell.wait(0.3)
        assert time.monotonic() - started >= 0.29
    finally:
        doorbell.close()
