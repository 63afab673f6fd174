"""The daily report task that beat sends: each finished UTC day's report, recorded once.

Beat sends ``tierline.daily_report`` shortly after midnight (``schedules.beat``). It records
the day before, and any earlier day since the newest stored report that has none (at most
``CATCH_UP_DAYS`` back), so a beat or worker that was down over a midnight leaves no gap.
A day with no traffic gets a report of zeros. Safe to run twice: a day's report is written
once (``workers.period_report.record_day``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from workers.app import app
from workers.period_report import DAILY, DAY_S, latest_start, record_day
from workers.runtime import runtime

log = logging.getLogger(__name__)

REPORT_TASK = "tierline.daily_report"
CATCH_UP_DAYS = 7


def days_to_record(latest: dt.date | None, now_s: float, *,
                   catch_up_days: int = CATCH_UP_DAYS) -> list[dt.date]:
    """The finished UTC days to report, oldest first: yesterday, and the days after the newest
    stored report (``latest``) up to ``catch_up_days`` back."""
    yesterday = dt.datetime.fromtimestamp(now_s, dt.UTC).date() - dt.timedelta(days=1)
    first = yesterday
    if latest is not None and latest < yesterday:
        first = max(latest + dt.timedelta(days=1),
                    yesterday - dt.timedelta(days=catch_up_days - 1))
    return [first + dt.timedelta(days=n) for n in range((yesterday - first).days + 1)]


def record_finished_days(now_s: float) -> list[str]:
    """Record the reports of the days ``days_to_record`` names; returns those days (ISO)."""
    rt = runtime()
    with rt.engine.connect() as conn:
        latest_s = latest_start(conn, DAILY)
    latest = None if latest_s is None else (dt.date(1970, 1, 1)
                                            + dt.timedelta(days=int(latest_s // DAY_S)))
    recorded = []
    for day in days_to_record(latest, now_s):
        body, new = record_day(rt.engine, rt.policy, day, now_s)
        spend = body["spend"]
        log.info("daily report %s %s: %d requests ended, $%s charged (%s)", day,
                 "recorded" if new else "already recorded", body["requests"]["ended"],
                 spend["ledger_usd"], "balanced" if spend["balanced"] else "NOT balanced")
        recorded.append(day.isoformat())
    return recorded


@app.task(name=REPORT_TASK)
def daily_report() -> list[str]:
    """Record yesterday's report (and any missed day's) in the database."""
    return record_finished_days(time.time())
