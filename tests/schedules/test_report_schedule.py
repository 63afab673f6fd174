"""The daily report's beat entry: 00:15 UTC by default, moved or turned off by
``$TIERLINE_REPORT_SCHEDULE``, and a bad value named in the log without stopping the rest."""

from __future__ import annotations

import logging

import pytest
from celery.schedules import crontab

from tierline.config.settings import load_settings
from tierline.schedules.beat import build_schedule, report_schedule_of


def test_the_daily_report_runs_at_a_quarter_past_midnight_on_the_schedules_queue() -> None:
    default = report_schedule_of(load_settings({}))
    entry = build_schedule(None, report_schedule=default)["daily-report"]
    assert entry["task"] == "tierline.daily_report"
    assert entry["schedule"] == crontab(minute="15", hour="0")
    assert entry["options"] == {"queue": "schedules"}
    assert "args" not in entry  # the task works out which days are over


def test_the_environment_moves_the_report_or_turns_it_off() -> None:
    moved = report_schedule_of(load_settings({"TIERLINE_REPORT_SCHEDULE": "30 6 * * 1"}))
    assert build_schedule(None, report_schedule=moved)["daily-report"]["schedule"] == \
        crontab(minute="30", hour="6", day_of_week="1")
    for off in ("off", "OFF", " off "):
        schedule = build_schedule(None, report_schedule=report_schedule_of(load_settings(
            {"TIERLINE_REPORT_SCHEDULE": off})))
        assert set(schedule) == {"sweep-stranded", "watchdog"}
    assert report_schedule_of(load_settings({"TIERLINE_REPORT_SCHEDULE": ""})) == "15 0 * * *"


@pytest.mark.parametrize(("value", "reason"), [
    ("daily", "need 5 fields"),
    ("15 25 * * *", "'15 25 * * *'"),
])
def test_a_bad_schedule_is_named_and_the_rest_still_runs(
        value: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        schedule = build_schedule(None, report_schedule=value)
    assert set(schedule) == {"sweep-stranded", "watchdog"}
    assert "TIERLINE_REPORT_SCHEDULE" in caplog.text and reason in caplog.text
    assert "no daily report scheduled" in caplog.text
