"""Job lifecycle on Postgres: cancel keeps finished results, windows expire, resume re-charges
nothing. Messages go to a broker database no worker reads, as if the broker had lost them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tierline.config.settings import Settings
from tierline.producer.client import Client, JobStatus
from tierline.record.schema import charges
from tierline.router.policy import load_policy
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
pytestmark = pytest.mark.integration


@pytest.fixture()
def lost_broker_client(own_broker: str, postgres_url: str, use_broker: Any) -> Iterator[Client]:
    """A producer whose broker database nobody consumes (the test's own), and an in-thread
    simulator."""
    from tierline.sim.fleet import fleet_from_policy
    from tierline.sim.server import start

    unread = own_broker  # emptied before and after by own_broker
    with start(fleet_from_policy(POLICY, seed=1)) as sim:
        rt = Runtime(Settings(unread, postgres_url, POLICY), load_policy(POLICY),
                     {"TIERLINE_SIM_URL": sim.url})
        install(rt)
        previous = str(app_conf_broker())
        use_broker(unread)
        try:
            yield Client(rt)
        finally:
            use_broker(previous)


def app_conf_broker() -> str:
    from tierline.workers.app import app

    return str(app.conf.broker_url)


@contextmanager
def _statements(client: Client) -> Iterator[list[str]]:
    """The SQL statements the client's engine runs inside the block."""
    from sqlalchemy import event

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(client.rt.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(client.rt.engine, "before_cursor_execute", seen)


def _looks_and_counts(statements: list[str]) -> tuple[list[str], list[str]]:
    """The reads of the job's row, and the counts of its requests by state."""
    return ([s for s in statements if s.lstrip().startswith("SELECT jobs.name, jobs.status")],
            [s for s in statements if "count(*)" in s and "GROUP BY requests.status" in s])


def _answer_directly(client: Client, ids: list[str]) -> None:
    """Route and answer these requests with the workers' own code, in this process."""
    routing.route(client.rt, ids, lambda bundle, _tier, _lane, resumed: execute.execute(
        client.rt, bundle, resumed=resumed))


def test_cancel_keeps_finished_results_and_ends_the_rest(lost_broker_client: Client) -> None:
    client = lost_broker_client
    report = client.submit_many([f"cancel me {i}" for i in range(20)], lane="batch")
    assert client.status(report.job_id).state == "in_progress"
    _answer_directly(client, report.request_ids[:5])
    status = client.cancel(report.job_id)
    assert status.state == "cancelled"
    assert status.by_status == {"done": 5, "cancelled": 15}
    rows = list(client.results(report.job_id))
    assert [r["status"] for r in rows] == ["done"] * 5 + ["cancelled"] * 15
    assert all(r["content"] for r in rows[:5])
    _answer_directly(client, report.request_ids)  # a late bundle changes nothing
    assert client.status(report.job_id).by_status == {"done": 5, "cancelled": 15}
    assert client.resume(report.job_id) == 0


def test_requests_left_when_the_completion_window_closes_expire(lost_broker_client: Client
                                                                ) -> None:
    client = lost_broker_client
    report = client.submit_many(["late"] * 4, lane="batch", completion_window_s=0.5)
    _answer_directly(client, report.request_ids[:1])
    time.sleep(0.6)
    status = client.status(report.job_id)
    assert status.state == "expired"
    assert status.by_status == {"done": 1, "expired": 3}


def test_a_job_of_only_invalid_requests_fails_with_the_reason(lost_broker_client: Client) -> None:
    report = lost_broker_client.submit_many([{"lane": "batch"}, {"prompt": ""}])
    status = lost_broker_client.status(report.job_id)
    assert (status.state, status.total) == ("failed", 0)
    assert status.error and "all 2 were rejected" in status.error


def test_resume_after_lost_messages_answers_the_rest_without_recharging(
        lost_broker_client: Client, stack: dict[str, str], use_broker: Any) -> None:
    client = lost_broker_client
    report = client.submit_many([f"resume {i}" for i in range(20)], lane="standard")
    _answer_directly(client, report.request_ids[:5])
    with client.rt.engine.connect() as conn:
        paid_before = conn.execute(select(func.count()).select_from(charges).where(
            charges.c.job_id == report.job_id)).scalar_one()
    assert paid_before == 5

    use_broker(stack["TIERLINE_BROKER_URL"])  # the broker the workers read
    assert client.resume(report.job_id) == 15
    status = client.wait(report.job_id, timeout_s=60)
    assert (status.state, status.by_status) == ("completed", {"done": 20})
    with client.rt.engine.connect() as conn:
        paid_after = conn.execute(select(func.count()).select_from(charges).where(
            charges.c.job_id == report.job_id)).scalar_one()
    assert paid_after == 20


def test_waiting_polls_the_job_row_and_counts_its_requests_once(
        lost_broker_client: Client) -> None:
    """Counting a job's requests walks most of its index; a wait without a progress
    callback polls the job's own row and counts only for the status it returns."""
    import threading

    client = lost_broker_client
    report = client.submit_many([f"poll {i}" for i in range(6)], lane="standard")
    later = threading.Timer(0.8, _answer_directly, (client, report.request_ids))
    with _statements(client) as statements:
        later.start()
        try:
            status = client.wait(report.job_id, timeout_s=30, poll_s=0.05, max_poll_s=0.1)
        finally:
            later.join()
    assert (status.state, status.by_status) == ("completed", {"done": 6})
    polls, counts = _looks_and_counts(statements)
    assert len(polls) > 3 and len(counts) == 1


def test_notifications_do_not_speed_up_the_progress_counts(lost_broker_client: Client) -> None:
    """A big job notifies on every bundle's commit; a wait with a progress callback looks at
    the job's row for each, but counts its requests only at its polling pace."""
    import threading

    from tierline.record.db import notify_jobs

    client = lost_broker_client
    report = client.submit_many([f"notified {i}" for i in range(4)], lane="standard")

    def ring_often() -> None:
        for _ in range(100):  # 100 commits in 1 s, as a busy job's bundles would make
            with client.rt.engine.begin() as conn:
                notify_jobs(conn, [report.job_id])
            time.sleep(0.01)
        _answer_directly(client, report.request_ids)

    progress: list[JobStatus] = []
    ringer = threading.Thread(target=ring_often)
    with _statements(client) as statements:
        ringer.start()
        try:
            status = client.wait(report.job_id, timeout_s=30, poll_s=0.5, max_poll_s=0.5,
                                 on_progress=progress.append)
        finally:
            ringer.join()
    assert (status.state, status.by_status) == ("completed", {"done": 4})
    looks, counts = _looks_and_counts(statements)
    assert len(looks) > 10  # woken by the notifications
    # about 1.2 s at one count per 0.5 s; a loaded machine stretches the wait a little
    assert len(counts) == len(progress) <= 8
