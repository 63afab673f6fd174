"""Job notifications on Postgres: sent when the transaction commits, never on a rollback;
a process's waiters share one listening connection and are woken for their own jobs only."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import psycopg

from tierline.record.db import JOBS_CHANNEL, engine_for, notify_jobs
from tierline.record.listener import Listener, listener_for


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


def _listening_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND query = %s", (f"LISTEN {JOBS_CHANNEL}",)
                           ).fetchone()
    return int(row[0]) if row else 0


def _eventually(check: Callable[[], bool], within_s: float = 2.0) -> bool:
    until = time.monotonic() + within_s
    while not check() and time.monotonic() < until:
        time.sleep(0.02)
    return check()


def test_a_bell_rings_for_its_own_job_only(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    listener = listener_for(engine)
    assert listener is not None
    ours, other = _ids("ours", "other")
    with listener.bell(ours) as bell:
        with engine.begin() as conn:
            notify_jobs(conn, [other, ours])
        assert bell.wait(5.0)
        bell.clear()
        with engine.begin() as conn:
            notify_jobs(conn, [other])
        assert not bell.wait(0.3)


def test_many_waiters_share_one_connection_which_closes_when_they_leave(
        postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    listener = listener_for(engine)
    assert listener is not None and listener_for(engine) is listener
    listener.linger_s = 0.0
    assert _eventually(lambda: _listening_backends(postgres_url) == 0)
    jobs = _ids(*(f"job{i}" for i in range(20)))
    entered, rung = threading.Barrier(len(jobs) + 1), []

    def wait(job: str) -> None:
        with listener.bell(job) as bell:
            entered.wait()
            rung.append(bell.wait(5.0))

    threads = [threading.Thread(target=wait, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    entered.wait()
    assert _listening_backends(postgres_url) == 1
    with engine.begin() as conn:
        notify_jobs(conn, jobs)
    for thread in threads:
        thread.join(5.0)
    assert rung == [True] * len(jobs)
    assert _eventually(lambda: _listening_backends(postgres_url) == 0)


def test_waiters_that_cannot_listen_are_woken_to_look_for_themselves(postgres_url: str) -> None:
    missing = engine_for(postgres_url.rsplit("/", 1)[0] + "/no_such_database")
    listener = listener_for(missing)
    assert listener is not None
    started = time.monotonic()
    with listener.bell("job-a") as bell:
        assert bell.wait(5.0)  # the failed connection rings every bell
    assert time.monotonic() - started < 3.0
    assert _eventually(lambda: listener._thread is None, within_s=15.0)


def test_sqlite_needs_no_listener() -> None:
    assert listener_for(engine_for("sqlite://")) is None


def test_the_connection_stays_open_a_while_for_the_next_waiter(postgres_url: str) -> None:
    listener = Listener(engine_for(postgres_url).url.set(drivername="postgresql")
                        .render_as_string(hide_password=False), linger_s=1.0)
    with listener.bell("job-first"):
        pass
    assert _listening_backends(postgres_url) >= 1  # still there for the next call
    with listener.bell("job-next") as bell:
        assert bell.wait(0.0) is False and listener._tried.is_set()
    assert _eventually(lambda: listener._thread is None, within_s=10.0)


def test_settling_completes_expires_and_notifies_in_one_pass(postgres_url: str) -> None:
    """Jobs with nothing left complete, one past its window expires with its requests, one
    still answering and one ended are left as they are; the first two are notified."""
    from sqlalchemy import insert, select

    from tierline.record import jobs
    from tierline.record.schema import jobs as job_rows
    from tierline.record.schema import requests

    engine = engine_for(postgres_url)
    done, busy, late, ended = ids = _ids("done", "busy", "late", "ended")
    now_s = time.time()
    with engine.begin() as conn:
        conn.execute(insert(job_rows), [
            {"id": job, "name": None, "tenant": "t", "lane": "realtime", "created_at": now_s,
             "status": "completed" if job == ended else "in_progress",
             "expires_at": now_s - 1 if job == late else None,
             "accepted": 1, "duplicates": 0, "rejected": 0} for job in ids])
        conn.execute(insert(requests), [
            {"id": f"{job}-r", "job_id": job, "seq": 0, "tenant": "t", "lane": "realtime",
             "body": {"messages": []}, "max_output_tokens": 8, "latency_budget_s": 5.0,
             "submitted_at": now_s, "deadline_at": now_s + 5,
             "status": "done" if job in (done, ended) else "routed"} for job in ids])
    with psycopg.connect(postgres_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {JOBS_CHANNEL}")
        with engine.begin() as conn:
            jobs.settle(conn, [ended, late, busy, done, done], now_s)
        assert sorted(_received(listener, ids)) == sorted([done, late])
    with engine.connect() as conn:
        states = dict(conn.execute(select(job_rows.c.id, job_rows.c.status)
                                   .where(job_rows.c.id.in_(ids))).all())
        late_request = conn.execute(select(requests.c.status)
                                    .where(requests.c.id == f"{late}-r")).scalar_one()
    assert states == {done: "completed", busy: "in_progress", late: "expired",
                      ended: "completed"}
    assert late_request == "expired"
