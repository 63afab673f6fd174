"""``tierline classify`` end to end on the embedded default (subprocesses, no servers)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_dir

BANKING77 = data_dir() / "classification" / "banking77"


def tierline(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env["TIERLINE_DATABASE_URL"] = f"sqlite:///{cwd / 'tierline.sqlite'}"
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_banking77_slice_gets_one_valid_label_per_row_and_an_accuracy(tmp_path: Path) -> None:
    if not (BANKING77 / "test.csv").exists():
        pytest.skip(f"no BANKING77 data under {BANKING77}")
    with (BANKING77 / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[::15]  # ~200 rows across all 77 intents
    sliced = tmp_path / "slice.csv"
    with sliced.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["text", "category"])
        writer.writeheader()
        writer.writerows(rows)
    labels = json.loads((BANKING77 / "categories.json").read_text(encoding="utf-8"))
    run = tierline("classify", str(sliced), "--labels", str(BANKING77 / "categories.json"),
                   "--out", "out.jsonl", "--gold-column", "category", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = _jsonl(tmp_path / "out.jsonl")
    assert [r["row"] for r in out] == list(range(1, len(rows) + 1))
    assert all(r["label"] is None or r["label"] in labels for r in out)
    assert all(r["status"] == "ok" and r["model"] and float(r["usd"]) > 0 for r in out)
    assert [r["gold"] for r in out] == [r["category"] for r in rows]
    assert f"{len(rows)} rows" in run.stdout and "accuracy:" in run.stdout
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == len(rows) and summary["state"] == "completed"
    # the simulated models answer gold with 60-95 % accuracy; guessing would be 1/77
    assert 0.5 < summary["accuracy"] < 1.0
    assert 0 < float(summary["usd"]) < float(summary["usd_all_top"])


def test_bad_jsonl_rows_go_to_the_errors_file_with_row_numbers_and_the_rest_is_labeled(
        tmp_path: Path) -> None:
    lines = [
        {"text": "where is my parcel?", "ref": "a1"},
        {"text": "   ", "ref": "a2"},  # empty text
        {"text": "x" * 5_000_000, "ref": "a3"},  # a 5 MB row
        {"body": "no text field", "ref": "a4"},
        "{not json",
        ["not", "an", "object"],
        {"text": "I want my money back", "ref": "a7"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
                    encoding="utf-8")
    run = tierline("classify", "in.jsonl", "--labels", "billing, shipping, returns",
                   "--out", "out.csv", "--id-column", "ref", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    errors = _jsonl(tmp_path / "out.csv.errors.jsonl")
    assert [e["row"] for e in errors] == [2, 3, 4, 5, 6]
    reasons = [e["reason"] for e in errors]
    assert "empty text in column 'text'" in reasons[0]
    assert "text is 5,000,000 characters" in reasons[1]
    assert "no field 'text'" in reasons[2]
    assert "malformed JSON" in reasons[3] and "not a JSON object" in reasons[4]
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        out = list(csv.DictReader(handle))
    assert [r["row"] for r in out] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [r["status"] for r in out] == ["ok"] + ["rejected"] * 5 + ["ok"]
    assert out[0]["id"] == "a1" and out[6]["id"] == "a7"
    assert out[0]["label"] in ("billing", "shipping", "returns") and out[1]["label"] == ""
    assert "rejected: 5 rows" in run.stdout


def test_bad_csv_rows_are_rejected_by_row_number(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([["r1", "parcel late"], ["r2", ""], ["r3", "y" * 5_000_000],
                          ["r4", "refund", "extra field"], ["r5", "card charged twice"]])
    run = tierline("classify", "in.csv", "--labels", "billing,shipping,returns", "--out",
                   "out.jsonl", "--id-column", "id", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    errors = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [(e["row"], e["id"]) for e in errors[:2]] == [(2, "r2"), (3, "r3")]
    assert [e["row"] for e in errors] == [2, 3, 4]
    out = _jsonl(tmp_path / "out.jsonl")
    assert [(r["row"], r["id"], r["status"]) for r in out] == [
        (1, "r1", "ok"), (2, "r2", "rejected"), (3, "r3", "rejected"), (4, None, "rejected"),
        (5, "r5", "ok")]


def test_a_file_whose_every_row_is_invalid_fails_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("text\n\"\"\n\" \"\n", encoding="utf-8")
    run = tierline("classify", "in.csv", "--labels", "a,b", "--out", "out.jsonl", cwd=tmp_path)
    assert run.returncode == 1
    assert "no valid row: all 2 rows were rejected" in run.stderr
    assert ": failed)" in run.stderr  # the job's state
    assert [e["row"] for e in _jsonl(tmp_path / "out.jsonl.errors.jsonl")] == [1, 2]
    assert [r["status"] for r in _jsonl(tmp_path / "out.jsonl")] == ["rejected", "rejected"]


@pytest.mark.parametrize(("files", "args", "message"), [
    ({"in.csv": "body,category\nhi,a\n"}, ["--labels", "a,b"],
     "in.csv: no column 'text'; the columns are: body, category"),
    ({"in.jsonl": '{"body": "hi"}\n'}, ["--labels", "a,b"],
     "in.jsonl: line 1: no field 'text'; the fields are: body"),
    ({"in.csv": "text\nhi\n", "labels.txt": "a\nb\na\n"}, ["--labels", "labels.txt"],
     "labels.txt: duplicate label 'a'"),
])
def test_a_whole_file_error_is_one_line_and_exit_code_2(tmp_path: Path, files: dict[str, str],
                                                        args: list[str], message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    data = next(name for name in files if name.startswith("in."))
    run = tierline("classify", data, *args, "--out", "out.jsonl", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_example_job_file_validates() -> None:
    from tierline.producer.jobspec import load_job

    if not (BANKING77 / "test.csv").exists():
        pytest.skip(f"no BANKING77 data under {BANKING77}")
    spec = load_job(ROOT / "examples" / "banking77" / "job.yaml")
    assert len(spec.labels) == 77 and spec.schedule == "30 2 * * *"
