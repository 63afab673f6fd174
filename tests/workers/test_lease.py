"""Everything a task does fits inside the broker's visibility timeout, which is short enough
that a killed worker's bundle comes back within about a minute."""

from __future__ import annotations

import pytest

from tierline.config.lease import DEFAULT_VISIBILITY_S, Lease
from tierline.workers.app import _config
from tierline.workers.tasks import RETRY_MAX_S, retry_countdown_s


def test_a_killed_workers_messages_come_back_within_about_a_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERLINE_VISIBILITY_TIMEOUT_S", raising=False)
    monkeypatch.setenv("TIERLINE_BROKER_URL", "redis://127.0.0.1:6379/10")
    options = _config()["broker_transport_options"]
    assert options["visibility_timeout"] == DEFAULT_VISIBILITY_S == 60.0
    # looked for at least every 10 s, each time with a real scan
    assert options["unacked_restore_interval"] <= 10
    assert options["unacked_restore_throttle"] == 1


@pytest.mark.parametrize("visibility_s", [8.0, 20.0, 60.0, 600.0])
def test_a_tasks_rounds_calls_and_writes_end_before_its_message_is_handed_out_again(
        visibility_s: float) -> None:
    lease = Lease(visibility_s)
    # the last round starts by rounds_s; its calls end call_s later; the write then retries
    assert lease.rounds_s + lease.call_s + lease.write_s < visibility_s
    assert lease.max_countdown_s < visibility_s  # an ETA message is held unacknowledged


def test_retries_after_a_fault_back_off_but_stay_inside_the_lease() -> None:
    waits = [retry_countdown_s(n, Lease().max_countdown_s) for n in range(12)]
    assert waits[0] <= 1.0 and max(waits) <= RETRY_MAX_S < Lease().max_countdown_s
    assert retry_countdown_s(30, 5.0) <= 5.0


def test_the_tasks_that_ride_out_faults_have_no_retry_limit() -> None:
    # retry(max_retries=None) means Celery's default of 3, not "no limit": after three
    # retries a fault of the moment would be raised again (and the message requeued at
    # once, without backoff), so the limit is lifted where the tasks are declared.
    from tierline.producer.batch_tasks import ingest_batch
    from tierline.workers.tasks import call_models, route_requests

    assert [t.max_retries for t in (route_requests, call_models, ingest_batch)] == [None] * 3
