"""Classification job files and flags: validation errors name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierline.cli.classify import job_of
from tierline.config.settings import load_settings
from tierline.producer.jobspec import load_job
from tierline.router.errors import InvalidInput


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in.csv").write_text("text,category\nhello,a\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("a\nb\n\nc\n", encoding="utf-8")
    return tmp_path


def _job(folder: Path, text: str) -> Path:
    path = folder / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "input: in.csv\nlabels: labels.txt\nout: out.jsonl\n"


def test_a_job_file_resolves_paths_beside_itself_and_fills_defaults(folder: Path) -> None:
    spec = load_job(_job(folder, GOOD + "schedule: '30 2 * * *'\n"))
    assert spec.input == folder / "in.csv" and spec.format == "csv"
    assert spec.labels.labels == ("a", "b", "c")
    assert (spec.name, spec.lane, spec.text_column, spec.tenant) == ("in", "batch", "text",
                                                                      "default")
    assert spec.errors_path(spec.out_path(0)) == folder / "out.jsonl.errors.jsonl"


def test_environment_variables_and_the_date_expand(folder: Path) -> None:
    environment = {"TIERLINE_DATA": str(folder)}  # and no OUT_DIR
    spec = load_job(_job(folder, "input: ${TIERLINE_DATA}/in.csv\nlabels: x, y\n"
                                 "out: ${OUT_DIR:-/tmp/t}/{job}-{date}.csv\nname: nightly\n"),
                    settings=load_settings(environment))
    assert spec.input == folder / "in.csv"
    assert spec.labels.labels == ("x", "y")
    assert spec.out_path(86400 * 365) == Path("/tmp/t/nightly-1971-01-01.csv")


@pytest.mark.parametrize(("body", "message"), [
    ("input: in.csv\nlabels: a, b\n", "job.yaml: out: missing"),
    ("input: nope.csv\nlabels: a, b\nout: o.jsonl\n", "job.yaml: input: no such file"),
    (GOOD + "lane: nightly\n", "job.yaml: lane: unknown lane 'nightly'"),
    (GOOD + "limt: 3\n", "job.yaml: limt: unknown key"),
    (GOOD + "limit: -3\n", "job.yaml: limit: must be a positive whole number"),
    (GOOD + "schedule: every night\n", "job.yaml: schedule: need 5 fields"),
    (GOOD + "schedule: '61 2 * * *'\n", "job.yaml: schedule: '61 2 \\* \\* \\*'"),
    (GOOD + "instructions: \"Be brief.\\nLabels: x\"\n", "job.yaml: instructions: a line"),
    (GOOD + "gold_column: text\n", "job.yaml: text_column: text, id and gold columns must"),
    ("input: in.csv\nlabels: labels.txt\nout: out.txt\n", "job.yaml: out: 'out.txt'"),
    ("input: in.csv\nlabels: missing.txt\nout: o.csv\n", "job.yaml: labels: no such file"),
    ("input: ${NOT_SET_ANYWHERE}/in.csv\nlabels: a,b\nout: o.csv\n",
     "job.yaml: input: \\$\\{NOT_SET_ANYWHERE\\} is not set"),
    ("- just\n- a list\n", "job.yaml: <root>: a job file is a mapping"),
    ("input: [unclosed\n", "job.yaml: <yaml>:"),
])
def test_a_bad_job_file_names_the_file_and_the_key(folder: Path, body: str,
                                                   message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_job(_job(folder, body))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("dup.txt", "a\nb\na\n", "dup.txt: duplicate label 'a'"),
    ("dup.json", '["a", "b", "b"]', "dup.json: duplicate label 'b'"),
    ("bad.json", '{"a": 1', "bad.json: malformed JSON"),
    ("nums.json", "[1, 2]", "nums.json: need a JSON list of strings"),
    ("one.txt", "only\n", "one.txt: need at least 2 labels"),
])
def test_a_bad_label_file_names_the_file_and_the_label(folder: Path, name: str, content: str,
                                                       message: str) -> None:
    (folder / name).write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_job(_job(folder, f"input: in.csv\nlabels: {name}\nout: o.csv\n"))


def test_labels_come_from_a_json_list_or_the_keys_of_a_json_object(folder: Path) -> None:
    (folder / "l.json").write_text(json.dumps(["x", "y"]), encoding="utf-8")
    (folder / "o.json").write_text(json.dumps({"p": "desc", "q": "desc"}), encoding="utf-8")
    for name, labels in (("l.json", ("x", "y")), ("o.json", ("p", "q"))):
        spec = load_job(_job(folder, f"input: in.csv\nlabels: {name}\nout: o.csv\n"))
        assert spec.labels.labels == labels


def test_flags_override_the_job_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    flags = {"labels": "p, q", "out": "elsewhere.csv", "limit": 5, "lane": "standard"}
    spec = job_of(None, _job(folder, GOOD), flags, load_settings({}))
    assert spec.labels.labels == ("p", "q")
    assert (spec.out, spec.limit, spec.lane) == (folder / "elsewhere.csv", 5, "standard")


def test_without_a_job_file_the_input_labels_and_output_are_required(folder: Path) -> None:
    with pytest.raises(InvalidInput, match="give --labels, --out"):
        job_of(str(folder / "in.csv"), None, {}, load_settings({}))
