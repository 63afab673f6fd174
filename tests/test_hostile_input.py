"""Hostile input on the producer intakes (files, the Python API, job files): each bad line
is rejected with its number and reason, its neighbours in the same chunk are kept, the job
never stays ``validating``, and the rejects file shows what the line held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.producer.intake import MAX_REJECT_TEXT_CHARS, RejectLog, excerpt, read_jsonl
from tierline.producer.jobspec import load_job
from tierline.record.schema import jobs, requests
from tierline.router.errors import InvalidInput
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime

POLICY = Path(__file__).resolve().parents[1] / "policies" / "demo.yaml"  # chunks of 64

HOSTILE_LINES: list[tuple[bytes, str]] = [  # (line, what its reason says)
    (b"[" * 100_000, "nested deeper"),
    (b'{"prompt": "hi", "max_output_tokens": ' + b"9" * 5000 + b"}", "100 digits"),
    (b'{"prompt": "hi", "latency_budget_s": NaN}', "NaN is not valid JSON"),
    (b'{"prompt": "hi", "latency_budget_s": Infinity}', "Infinity is not valid JSON"),
    (b'{"prompt": "\\ud800 alone"}', "lone surrogate"),
    (b'{"prompt": "a\\u0000b"}', "NUL"),
    (b'{"prompt": "caf\xe9 \xff"}', "not UTF-8"),
    (b'{"prompt": "' + b"x" * 2_000_000 + b'"}', "too long"),
    (b'{"prompt": "hi", "metadata": {"n": 1e999}}', "out of range"),
]


def _file(tmp_path: Path) -> tuple[Path, list[int], dict[int, str]]:
    """Valid lines with a hostile one between each two; (path, valid numbers, reasons)."""
    lines, valid, says = [], [], {}
    for index, (line, reason) in enumerate(HOSTILE_LINES):
        lines.append(json.dumps({"prompt": f"question {index}", "id": f"k{index}"}).encode())
        valid.append(len(lines))
        lines.append(line)
        says[len(lines)] = reason
    lines.append(json.dumps({"prompt": "the last one", "id": "last"}).encode())
    valid.append(len(lines))
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, valid, says


@pytest.fixture()
def client(own_postgres_url: str) -> Client:
    return Client(Runtime(Settings("memory://", own_postgres_url, POLICY), load_policy(POLICY)))


def test_hostile_lines_are_rejected_and_the_valid_lines_around_them_are_kept(
        client: Client, tmp_path: Path) -> None:
    path, valid, says = _file(tmp_path)
    rejects = RejectLog(tmp_path / "rejects.jsonl")
    reasons: dict[int, str] = {}
    report = client.submit_many(read_jsonl(path), on_reject=reasons.__setitem__,
                                on_reject_input=rejects.add)
    rejects.close()
    assert (report.accepted, report.rejected) == (len(valid), len(says))
    assert sorted(reasons) == sorted(says)
    for number, reason in says.items():
        assert reason in reasons[number], (number, reasons[number])
    with client.rt.engine.connect() as conn:
        state = conn.execute(select(jobs.c.status).where(jobs.c.id == report.job_id)).scalar()
        keys = conn.execute(select(requests.c.idempotency_key)
                            .where(requests.c.job_id == report.job_id)).scalars().all()
    assert state == "in_progress"
    assert sorted(keys) == sorted([f"k{i}" for i in range(len(HOSTILE_LINES))] + ["last"])

    written = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [w["line"] for w in written] == sorted(says)
    by_line = {w["line"]: w for w in written}
    assert by_line[2]["text_truncated"] and by_line[2]["text"] == "[" * MAX_REJECT_TEXT_CHARS
    assert by_line[10]["text"] == '{"prompt": "\\ud800 alone"}'
    assert by_line[14]["text"] == '{"prompt": "caf\\xe9 \\xff"}'  # bytes shown escaped
    assert by_line[16]["text_truncated"] and len(by_line[16]["text"]) == MAX_REJECT_TEXT_CHARS
    assert not by_line[6]["text_truncated"]


def test_python_api_items_are_checked_like_lines(client: Client) -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    items: list[Any] = [
        {"prompt": "fine", "id": "a"},
        {"prompt": "hi", "metadata": {"deep": deep}},
        {"prompt": "hi", "max_output_tokens": 10 ** 5000},
        {"prompt": "hi", "latency_budget_s": float("nan")},
        "\ud800 a lone surrogate",
        {"prompt": "a\x00b"},
        {"prompt": b"bytes are not text"},
        {"prompt": "y" * 2_000_000},
        {"prompt": "also fine", "id": "b"},
    ]
    reasons: dict[int, str] = {}
    shown: dict[int, tuple[str, bool]] = {}
    report = client.submit_many(items, on_reject=reasons.__setitem__,
                                on_reject_input=lambda n, _r, src: shown.__setitem__(
                                    n, excerpt(src)))
    assert (report.accepted, report.rejected) == (2, 7)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert "nested deeper" in reasons[2] and "100 digits" in reasons[3]
    assert "not finite" in reasons[4] and "lone surrogate" in reasons[5]
    assert "NUL" in reasons[6] and "too long" in reasons[8]
    assert all(len(text) <= MAX_REJECT_TEXT_CHARS for text, _ in shown.values())
    assert shown[8][1]  # the 2 MB prompt is cut
    with pytest.raises(InvalidInput, match="lone surrogate"):
        client.submit("\udc80")


@pytest.mark.parametrize(("content", "says"), [
    (b"name: " + b"[" * 100_000, "nested too deeply"),
    (b"name: caf\xe9\n", "not UTF-8"),
    (b'name: "\\ud800"\ninput: in.csv\nlabels: a,b\nout: o.jsonl\n', "lone surrogate"),
    (b"input: in.csv\nlabels: a,b\nout: o.jsonl\ntimeout_s: .nan\n", "not finite"),
    (b"input: in.csv\nlabels: a,b\nout: o.jsonl\nlimit: " + b"9" * 5000 + b"\n", "number too long"),
    (b"input: in.csv\nlabels: a,b\nout: o.jsonl\ntimeout_s: 1e400\n", "up to"),
    (b"input: in.csv\nlabels: labels.json\nout: o.jsonl\n", "nested deeper"),
])
def test_a_hostile_job_file_is_one_error_naming_the_file(tmp_path: Path, content: bytes,
                                                         says: str) -> None:
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "labels.json").write_text("[" * 100_000)
    job = tmp_path / "job.yaml"
    job.write_bytes(content)
    with pytest.raises(InvalidInput) as refused:
        load_job(job)
    named = tmp_path / "labels.json" if b"labels.json" in content else job
    assert str(named) in str(refused.value) and says in str(refused.value)


def test_tierline_submit_answers_the_valid_lines_of_a_hostile_file(tmp_path: Path) -> None:
    path, valid, says = _file(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    # this checkout's code, whichever one an installed tierline points at
    env |= {"TIERLINE_POLICY": str(POLICY), "PYTHONPATH": str(POLICY.parents[1])}
    run = subprocess.run([sys.executable, "-m", "tierline", "submit", str(path)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr and run.returncode == 0, run.stderr[-2000:]
    assert f"{len(valid)} accepted, 0 duplicate, {len(says)} rejected" in run.stdout
    assert f"completed: {len(valid)} requests: {len(valid)} done" in run.stdout
    for number in says:
        assert f"hostile.jsonl:{number}: rejected:" in run.stderr
    written = [json.loads(x) for x in
               (tmp_path / "hostile.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [w["line"] for w in written] == sorted(says)
    assert all(w["text"] and len(w["text"]) <= MAX_REJECT_TEXT_CHARS for w in written)


def test_a_batch_file_with_hostile_lines_keeps_its_valid_lines(client: Client) -> None:
    from tierline.producer.batch_intake import ingest
    from tierline.producer.batches import Batches
    from tierline.producer.files import Upload
    from tierline.record.schema import batches

    class Unpublished(Batches):  # no broker here: the intake is run below, by hand
        def _publish(self, job_id: str) -> bool:
            return False

    def line(custom_id: str, body: bytes = b'{"messages": [{"role": "user", "content": "hi"}]}'
             ) -> bytes:
        return (b'{"custom_id": "' + custom_id.encode() + b'", "method": "POST", '
                b'"url": "/v1/chat/completions", "body": ' + body + b"}")

    content = b"\n".join([
        line("a"),
        line("b", b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}'),
        line("\\ud800"),
        line("c", b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": '
                  + b"9" * 5000 + b"}"),
        line("d", b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": NaN}'),
        line("e", b"[" * 100_000),
        b'{"custom_id": "f", "url": "' + b"u" * 100_000 + b'"}',
        line("g", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'),
        line("h"),
    ]) + b"\n"
    made = Unpublished(client)
    file_id = made.files.upload("acme", Upload("batch", "in.jsonl", content))["id"]
    batch = made.create("acme", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                 "completion_window": "24h"})
    job = str(batch["id"]).removeprefix("batch_")
    assert ingest(client, job) == 2
    with client.rt.engine.connect() as conn:
        rejected = conn.execute(select(batches.c.rejected).where(batches.c.job_id == job)
                                ).scalar_one()
        state = conn.execute(select(jobs.c.status).where(jobs.c.id == job)).scalar_one()
    assert state == "in_progress"
    reasons = {number: reason for number, _, reason in rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert "NUL" in reasons[2] and "lone surrogate" in reasons[3]
    assert "100 digits" in reasons[4] and "NaN" in reasons[5] and "nested" in reasons[6]
    assert len(reasons[7]) < 300 and "not UTF-8" in reasons[8]
