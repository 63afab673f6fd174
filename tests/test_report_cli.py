"""``tierline report`` on good and bad input: today so far, a finished day stored once, and
one clear line with exit code 2 for a bad day."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tierline(*args: str, cwd: Path, database_url: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env["TIERLINE_POLICY"] = str(ROOT / "policies" / "demo.yaml")
    if database_url:
        env["TIERLINE_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _stored_days(db: Path) -> list[float]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT period_start FROM reports")]


def test_today_so_far_then_a_finished_day_stored_once(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"what is {n} + {n}?", "lane": lane})
             for n, lane in enumerate(["realtime", "standard", "batch", "batch"])]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    submitted = tierline("submit", "in.jsonl", "--wait", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr

    today = tierline("report", "--format", "json", cwd=tmp_path)
    assert today.returncode == 0, today.stderr
    body = json.loads(today.stdout)
    assert body["day"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert body["origin"].startswith("so far") and body["origin"].endswith("not stored")
    assert body["requests"]["ended"] == 4 and body["requests"]["by_status"] == {"ok": 4}
    assert set(body["latency_s"]) == {"realtime", "standard", "batch"}
    assert body["spend"]["balanced"] is True and body["spend"]["calls"] >= 4
    assert _stored_days(tmp_path / "tierline.sqlite") == []

    table = tierline("report", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "tierline daily report" in table.stdout and "balanced" in table.stdout
    assert "4 requests ended" in table.stdout

    first = tierline("report", "--day", "2026-01-05", "--format", "json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    quiet = json.loads(first.stdout)
    assert quiet["origin"] == "computed and stored now"
    assert quiet["requests"]["ended"] == 0 and quiet["spend"]["ledger_usd"] == "0.0000000000"
    again = tierline("report", "--day", "2026-01-05", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "stored 20" in again.stdout and "no request ended" in again.stdout
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp()
    assert _stored_days(tmp_path / "tierline.sqlite") == [start]


@pytest.mark.parametrize(("day", "says"), [
    ("2026-13-01", "--day: '2026-13-01' is not a date (YYYY-MM-DD, UTC)"),
    ("20260105", "--day: '20260105' is not a date (YYYY-MM-DD, UTC)"),
    ("yesterday", "--day: 'yesterday' is not a date (YYYY-MM-DD, UTC)"),
    ("2999-01-01", "--day: 2999-01-01 is in the future (today is "),
])
def test_a_bad_day_is_one_line_and_exit_2(tmp_path: Path, day: str, says: str) -> None:
    run = tierline("report", "--day", day, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: ") and says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_a_missing_record_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = tierline("report", "--day", "2026-01-05", cwd=tmp_path)
    assert run.returncode == 2
    assert "no tierline record at" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "tierline.sqlite").exists()  # asking leaves no empty record


def test_an_unmigrated_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tierline.sqlite").touch()  # a record that was never migrated
    run = tierline("report", "--day", "2026-01-05", cwd=tmp_path)
    assert run.returncode == 2
    assert "is it migrated? `tierline db upgrade`" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_day_is_stored_on_postgres_once(tmp_path: Path, own_postgres_url: str) -> None:
    import psycopg

    for _ in range(2):
        run = tierline("report", "--day", "2026-01-05", "--format", "json", cwd=tmp_path,
                       database_url=own_postgres_url)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["requests"]["ended"] == 0
    with psycopg.connect(own_postgres_url) as conn:
        rows = conn.execute("SELECT kind, period_start, period_end FROM reports").fetchall()
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp()
    assert rows == [("daily", start, start + 86400)]
