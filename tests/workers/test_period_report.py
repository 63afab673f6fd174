"""The daily report over traffic that went through the real tier worker: counts by lane and
status, answers by tier, spend equal to the ledger's, the top-tier counterfactual, latency,
failures by class; stored once per day, a quiet day included, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import publish_nowhere
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.producer.client import Client
from tierline.record.ledger import reconcile
from tierline.record.period_report import (
    DAILY,
    DAY_S,
    compute,
    day_start_s,
    error_class,
    record_day,
    store,
    stored,
    top_price,
)
from tierline.record.schema import reports
from tierline.router.learned.labels import build_prompt
from tierline.schedules.reports import days_to_record, record_finished_days
from tierline.workers.runtime import Runtime, install

LABELS = ["refund", "card_lost", "transfer"]


def _reply(model: str, asked: str) -> tuple[int, dict[str, Any]]:
    if "broken" in asked:
        return 400, {"error": {"message": "this model refuses"}}
    if model == "sim-nano" and "hard" in asked:
        return 200, completion("Hmm, hard to say.")  # a hedge: the cascade climbs
    return 200, completion("refund")  # 40 tokens in, 3 out


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


def _runtime(tmp_path: Path, url: str, database_url: str) -> Runtime:
    policy = demo_policy({"kind": "cascade", "confidence_bar": 0.7})
    policy["models"]["sim-nano"]["limits"] = {"tokens_per_day": 2000}
    return runtime(tmp_path, url, policy, database_url)


def _line(text: str, lane: str, max_output_tokens: int = 20) -> dict[str, Any]:
    return {"prompt": build_prompt(text, LABELS), "lane": lane,
            "max_output_tokens": max_output_tokens}


def _traffic(rt: Runtime) -> None:
    """3 easy realtime answers, 2 batch answers after a climb, 2 refused calls, 1 request no
    budget can take, and a job of 2 cancelled before it was routed."""
    route_here(rt, [*(_line(f"where is my card {n}", "realtime") for n in range(3)),
                    *(_line(f"a hard one {n}", "batch") for n in range(2)),
                    *(_line(f"broken {n}", "batch") for n in range(2)),
                    _line("far too long an answer", "standard", max_output_tokens=3000)])
    client = Client(rt, publish=publish_nowhere)
    job = client.submit_many([_line(f"never asked {n}", "batch") for n in range(2)]).job_id
    client.cancel(job)


def test_the_report_counts_what_the_record_holds(tmp_path: Path, models_url: str,
                                                 database_url: str) -> None:
    rt = _runtime(tmp_path, models_url, database_url)
    started = time.time()
    _traffic(rt)
    with rt.engine.connect() as conn:
        body = compute(conn, started - 1, time.time() + 1, *top_price(rt.policy))
        ledger = reconcile(conn)

    requests = body["requests"]
    assert requests["by_lane"] == {"batch": {"cancelled": 2, "failed": 2, "ok": 2},
                                   "realtime": {"ok": 3}, "standard": {"failed": 1}}
    assert requests["by_status"] == {"cancelled": 2, "failed": 3, "ok": 5}
    assert requests["ended"] == 10
    assert requests["more_than_one_attempt"] == 2 and requests["more_than_one_attempt_share"] == 0.2
    assert body["answers"] == {"by_tier": {"t0": 3, "t1": 2},
                               "by_model": {"sim-mid": 2, "sim-nano": 3},
                               "by_lane_tier": {"realtime": {"t0": 3}, "batch": {"t1": 2}}}
    assert body["failures"] == {"Rejected": 2, "BudgetExceeded": 1}

    spend = body["spend"]
    # 5 nano calls at (40 × 0.10 + 3 × 0.40) / 1M, 2 mid calls at (40 × 0.80 + 3 × 3.20) / 1M
    assert Decimal(spend["ledger_usd"]) == ledger.charges_usd == Decimal("0.0001092")
    assert spend["calls"] == spend["paid_attempts"] == 7
    assert spend["paid_attempts_usd"] == spend["ledger_usd"] and spend["balanced"] is True
    assert spend["by_model"] == {"sim-mid": "0.0000832000", "sim-nano": "0.0000260000"}
    assert (spend["tokens_in"], spend["tokens_out"]) == (280, 21)

    top = body["top_tier"]
    # the 5 answers' own tokens at sim-frontier's prices: 5 × (40 × 5 + 3 × 20) / 1M
    assert top["model"] == "sim-frontier"
    assert top["usd_all_top"] == "0.0013000000"
    assert top["requests_usd"] == "0.0001092000"
    assert top["saved_usd"] == "0.0011908000" and top["saved_share"] == 0.916

    latency = body["latency_s"]
    assert set(latency) == {"realtime", "batch"}  # the standard request was never answered
    assert latency["realtime"]["answers"] == 3 and latency["batch"]["answers"] == 2
    for figures in latency.values():
        assert 0 <= figures["p50"] <= figures["p95"] < 60


def test_a_day_is_stored_once_and_a_quiet_day_gets_a_zero_report(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = _runtime(tmp_path, models_url, database_url)
    _traffic(rt)
    quiet = dt.date(2020, 2, 29)
    first, new = record_day(rt.engine, rt.policy, quiet, time.time())
    again, new_again = record_day(rt.engine, rt.policy, quiet, time.time())
    assert (new, new_again) == (True, False) and again == first
    assert first["requests"] == {"ended": 0, "by_status": {}, "by_lane": {},
                                 "more_than_one_attempt": 0, "more_than_one_attempt_share": 0.0}
    assert first["spend"]["ledger_usd"] == first["top_tier"]["usd_all_top"] == "0.0000000000"
    assert first["spend"]["balanced"] is True and first["failures"] == {}
    assert first["period"]["start"] == "2020-02-29T00:00:00+00:00"

    # A report written twice for the same period (a redelivered task) is one row.
    now = time.time()
    start = day_start_s(dt.datetime.fromtimestamp(now, dt.UTC).date())
    with rt.engine.begin() as conn:
        body = compute(conn, start, start + DAY_S, *top_price(rt.policy))
        assert store(conn, DAILY, start, start + DAY_S, body, now)
    with rt.engine.begin() as conn:
        later = compute(conn, start - 1, start + DAY_S, *top_price(rt.policy))
        assert not store(conn, DAILY, start, start + DAY_S, later, now + 5)
    with rt.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(reports)).scalar_one()
        found = stored(conn, DAILY, start)
    assert rows == 2 and found == (body, now)
    assert body["requests"]["ended"] == 10


def test_a_day_not_over_is_not_recorded(tmp_path: Path, models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, f"sqlite:///{tmp_path / 'r.sqlite'}")
    today = dt.datetime.now(dt.UTC).date()
    with pytest.raises(ValueError, match="not over"):
        record_day(rt.engine, rt.policy, today, time.time())


def test_the_task_records_yesterday_and_the_days_it_missed(tmp_path: Path,
                                                          models_url: str) -> None:
    rt = _runtime(tmp_path, models_url, f"sqlite:///{tmp_path / 'r.sqlite'}")
    previous = install(rt)
    try:
        now = day_start_s(dt.date(2026, 3, 10)) + 15 * 60
        assert record_finished_days(now) == ["2026-03-09"]
        assert record_finished_days(now + 60) == ["2026-03-09"]  # redelivered: same report
        assert record_finished_days(now + 3 * DAY_S) == ["2026-03-10", "2026-03-11",
                                                         "2026-03-12"]
    finally:
        install(previous)
    with rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reports)).scalar_one() == 4


@pytest.mark.parametrize(("latest", "now", "days"), [
    (None, "2026-03-10T00:15", ["2026-03-09"]),
    ("2026-03-09", "2026-03-10T00:15", ["2026-03-09"]),
    ("2026-03-07", "2026-03-10T00:15", ["2026-03-08", "2026-03-09"]),
    ("2026-01-01", "2026-03-10T00:15", [f"2026-03-0{d}" for d in range(3, 10)]),  # 7 back
    ("2026-03-12", "2026-03-10T00:15", ["2026-03-09"]),  # a clock gone back: only yesterday
])
def test_which_days_the_task_records(latest: str | None, now: str, days: list[str]) -> None:
    now_s = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC).timestamp()
    found = days_to_record(None if latest is None else dt.date.fromisoformat(latest), now_s)
    assert [d.isoformat() for d in found] == days


@pytest.mark.parametrize(("error", "kind"), [
    ("TooSlow: sim-mid: expected 2.50 s (0.50 s + 200 tokens × 10.0 ms)", "TooSlow"),
    ("CircuitOpen: sim-nano: 5 failures in a row", "CircuitOpen"),
    ("BudgetExceeded: no budget of sim-nano can ever take this request", "BudgetExceeded"),
    ("no model of the panel answered: sim-a: Rejected: no", "no model of the panel answered"),
    ("job failed", "job failed"),
    (None, "unknown"),
])
def test_a_failure_is_counted_by_its_error_class(error: str | None, kind: str) -> None:
    assert error_class(error) == kind
