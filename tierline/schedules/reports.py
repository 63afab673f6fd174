"""The daily report task that beat sends: each finished UTC day's report, recorded once.

Beat sends ``tierline.daily_report`` shortly after midnight (``tierline.schedules.beat``). It
records
the day before, and any earlier day since the newest stored report that has none (at most
``CATCH_UP_DAYS`` back), so a beat or worker that was down over a midnight leaves no gap.
A day with no traffic gets a report of zeros. Safe to run twice: a day's report is written
once (``tierline.record.period_report.record_day``).

With ``$TIERLINE_REPORT_DIR`` set, each recorded day's page is also written there as
``daily-YYYY-MM-DD.html``, and when the day is a Sunday its ISO week's rollup as
``weekly-YYYY-Www.html`` (``tierline.schedules.report_html``). A page that cannot be written is
logged; the day stays recorded in the database and its page can be made with
``tierline report --html``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from tierline.record.period_report import DAILY, DAY_S, latest_start, record_day
from tierline.workers.app import app
from tierline.workers.runtime import runtime

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
    folder = rt.settings.report_dir
    if folder is not None:
        for day_text in recorded:
            write_pages(folder, dt.date.fromisoformat(day_text), now_s)
    return recorded


def write_pages(folder: Path, day: dt.date, now_s: float) -> list[Path]:
    """Write ``day``'s HTML page, and its week's if it is a Sunday, into ``folder``."""
    from tierline.schedules.report_html import gather, page, week_days

    rt = runtime()
    year, week, weekday = day.isocalendar()
    wanted = [(folder / f"daily-{day.isoformat()}.html", [day],
               f"tierline daily report {day} (UTC)")]
    if weekday == 7:
        name = f"{year}-W{week:02d}"
        days = week_days(name)
        wanted.append((folder / f"weekly-{name}.html", days,
                       f"tierline weekly report {name} ({days[0]} to {days[-1]}, UTC)"))
    written = []
    for path, days, title in wanted:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".html.partial")
            partial.write_text(page(gather(rt.engine, rt.policy, days, now_s, title)),
                               encoding="utf-8")
            partial.replace(path)  # a reader never sees half a page
        except OSError as exc:
            log.error("%s: cannot write the report page (%s); it is recorded in the database, "
                      "`tierline report --html` makes it", path, exc)
            continue
        log.info("report page written: %s", path)
        written.append(path)
    return written


@app.task(name=REPORT_TASK)
def daily_report() -> list[str]:
    """Record yesterday's report (and any missed day's) in the database."""
    return record_finished_days(time.time())
