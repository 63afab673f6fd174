"""``tierline report --html``: one self-contained page whose five charts render in headless
Chromium, for a day and an ISO week; beat writes each day's page (and on Sunday the week's)
into ``$TIERLINE_REPORT_DIR``; bad input is one line and exit code 2."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chromium import distinct_colours, dump_dom, png_size, screenshot
from tierline.schedules.report_html import CHARTS

ROOT = Path(__file__).resolve().parents[1]


def tierline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tierline`` of this checkout on the embedded stack, in ``cwd``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env["TIERLINE_POLICY"] = str(ROOT / "policies" / "demo.yaml")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)

# Runs after load, in the browser: each image's rendered and natural size, into the DOM.
_MEASURE = """<script>addEventListener('load', () => {
  document.body.dataset.sizes = JSON.stringify([...document.images].map(
    i => [i.naturalWidth, i.naturalHeight, i.width, i.height]));
  document.body.dataset.svgs = document.querySelectorAll('svg').length;
});</script></body>"""


def _charts_in_chromium(page: Path) -> list[list[int]]:
    measured = page.with_name(page.stem + "-measured.html")
    measured.write_text(page.read_text().replace("</body>", _MEASURE))
    dom = dump_dom(measured.as_uri())
    found = re.search(r'data-sizes="([^"]*)"', dom)
    assert found, dom[:2000]
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_the_html_report_shows_its_charts_in_a_browser(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"what is {n} + {n}?", "lane": lane})
             for n, lane in enumerate(["realtime", "standard", "batch", "batch", "standard"])]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    submitted = tierline("submit", "in.jsonl", "--wait", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr

    made = tierline("report", "--html", "out/today.html", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    page = tmp_path / "out" / "today.html"
    text = page.read_text()
    assert "5 requests ended" in text and "saved" in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(CHARTS)

    sizes = _charts_in_chromium(page)
    assert len(sizes) == len(CHARTS)
    for natural_w, natural_h, shown_w, shown_h in sizes:
        assert natural_w > 300 and natural_h > 150 and shown_w > 300 and shown_h > 150

    shot = screenshot(page.as_uri(), tmp_path / "today.png", height=2400)
    assert png_size(shot.read_bytes()) == (1280, 2400)
    assert distinct_colours(shot) > 20  # text, tables and coloured bars, not a blank page

    year, week, _ = dt.datetime.now(dt.UTC).date().isocalendar()
    weekly = tierline("report", "--html", "week.html", "--week", f"{year}-W{week:02d}",
                      cwd=tmp_path)
    assert weekly.returncode == 0, weekly.stderr
    assert "tierline weekly report" in (tmp_path / "week.html").read_text()
    assert len(_charts_in_chromium(tmp_path / "week.html")) == len(CHARTS)


@pytest.mark.parametrize(("args", "reason"), [
    (["--week", "2026-49"], "is not an ISO week"),
    (["--week", "2999-W01"], "has not started yet"),
    (["--day", "2026-01-05", "--week", "2026-W02"], "give one of them"),
    (["--day", "yesterday"], "is not a date"),
])
def test_a_bad_period_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str],
                                                     reason: str) -> None:
    run = tierline("report", "--html", "out.html", *args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert reason in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.html").exists()


def test_beat_writes_the_days_page_and_on_sunday_the_weeks(tmp_path: Path) -> None:
    from tierline.config.settings import load_settings
    from tierline.record.db import upgrade
    from tierline.record.period_report import day_start_s
    from tierline.router.policy import load_policy
    from tierline.schedules.reports import record_finished_days
    from tierline.workers.runtime import Runtime, install

    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    upgrade(db)
    settings = load_settings({"TIERLINE_DATABASE_URL": db, "TIERLINE_ENV": "demo",
                              "TIERLINE_REPORT_DIR": str(tmp_path / "reports")})
    previous = install(Runtime(settings, load_policy(settings.policy_path)))
    try:
        saturday = day_start_s(dt.date(2026, 3, 7)) + 15 * 60
        assert record_finished_days(saturday) == ["2026-03-06"]
        assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == \
            ["daily-2026-03-06.html"]
        monday = day_start_s(dt.date(2026, 3, 9)) + 15 * 60  # Saturday and Sunday to record
        assert record_finished_days(monday) == ["2026-03-07", "2026-03-08"]
    finally:
        install(previous)
    pages = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert pages == ["daily-2026-03-06.html", "daily-2026-03-07.html", "daily-2026-03-08.html",
                     "weekly-2026-W10.html"]
    weekly = (tmp_path / "reports" / "weekly-2026-W10.html").read_text()
    assert "2026-03-02 to 2026-03-08" in weekly
    assert weekly.count("data:image/png;base64,") == len(CHARTS)


def test_an_unwritable_report_folder_keeps_the_day_recorded(tmp_path: Path) -> None:
    from tierline.config.settings import load_settings
    from tierline.record.db import upgrade
    from tierline.record.period_report import day_start_s
    from tierline.router.policy import load_policy
    from tierline.schedules.reports import record_finished_days
    from tierline.workers.runtime import Runtime, install

    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    upgrade(db)
    (tmp_path / "a-file").write_text("not a folder")
    settings = load_settings({"TIERLINE_DATABASE_URL": db, "TIERLINE_ENV": "demo",
                              "TIERLINE_REPORT_DIR": str(tmp_path / "a-file")})
    previous = install(Runtime(settings, load_policy(settings.policy_path)))
    try:
        assert record_finished_days(day_start_s(dt.date(2026, 3, 7)) + 900) == ["2026-03-06"]
    finally:
        install(previous)
