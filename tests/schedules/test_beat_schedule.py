"""The beat schedule from job files, and a nightly job's two steps on the embedded stack."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from celery.schedules import crontab

from tests.conftest import ROOT
from tierline.schedules.beat import build_schedule


def _write_jobs(folder: Path) -> None:
    (folder / "in.csv").write_text("text,category\nparcel late,shipping\nrefund please,returns\n"
                                   "charged twice,billing\n", encoding="utf-8")
    common = "input: in.csv\nlabels: billing, shipping, returns\ngold_column: category\n"
    (folder / "nightly.yaml").write_text(
        common + "name: support\nout: out/{job}-{date}.jsonl\nschedule: '30 2 * * *'\n",
        encoding="utf-8")
    (folder / "adhoc.yaml").write_text(common + "out: adhoc.jsonl\n", encoding="utf-8")
    (folder / "broken.yaml").write_text(common + "out: x.jsonl\nschedule: nightly\n",
                                        encoding="utf-8")


def test_the_schedule_has_the_sweeper_and_each_scheduled_job(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_jobs(tmp_path)
    with caplog.at_level(logging.ERROR):
        schedule = build_schedule(tmp_path)
    assert set(schedule) == {"sweep-stranded", "watchdog", "daily-report",
                             "classify:support"}
    assert schedule["sweep-stranded"]["schedule"] == 30.0
    assert schedule["sweep-stranded"]["task"] == "tierline.sweep_stranded"
    job = schedule["classify:support"]
    assert job["task"] == "tierline.classify_nightly"
    assert job["args"] == [str(tmp_path / "nightly.yaml")]
    assert job["schedule"] == crontab(minute="30", hour="2")
    assert job["options"] == {"queue": "schedules"}
    assert "broken.yaml: schedule: need 5 fields" in caplog.text  # skipped, named


def test_no_jobs_folder_means_only_the_sweeper_and_the_report(tmp_path: Path) -> None:
    assert set(build_schedule(None)) == {"sweep-stranded", "watchdog", "daily-report"}
    assert set(build_schedule(tmp_path / "absent")) == {"sweep-stranded", "watchdog",
                                                         "daily-report"}


def test_a_nightly_job_is_submitted_once_a_day_and_finished_into_its_output(
        tmp_path: Path) -> None:
    _write_jobs(tmp_path)
    script = textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        from tierline.schedules.nightly import finish_job, start_job
        from tierline.producer.client import Client
        from tierline.producer.embedded import embedded
        from tierline.config.settings import POLICY_DIR

        job_file = Path({str(tmp_path / "nightly.yaml")!r})
        gold = {{"parcel late": "shipping", "refund please": "returns", "charged twice": "billing"}}
        with embedded(POLICY_DIR / "dev.yaml", database=job_file.parent / "t.sqlite",
                      gold=gold) as rt:
            client = Client(rt)
            first = start_job(client, job_file, 86400 * 365)
            again = start_job(client, job_file, 86400 * 365 + 60)  # a redelivered task
            deadline = time.monotonic() + 30
            while (summary := finish_job(client, first)) is None:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        print(json.dumps({{"first": first, "again": again, "summary": summary}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["again"]["job_id"] == result["first"]["job_id"]
    out = tmp_path / "out" / "support-1971-01-01.jsonl"
    assert result["first"]["out"] == str(out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["row"] for r in rows] == [1, 2, 3]
    assert all(r["label"] in ("billing", "shipping", "returns") for r in rows)
    assert result["summary"]["rows"] == 3 and result["summary"]["state"] == "completed"
    assert (tmp_path / "out" / "support-1971-01-01.jsonl.summary.json").exists()
