"""`tierline router train`: a bundle a policy can name, and clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from router.bundle import load_bundle
from router.errors import PolicyError
from tests.conftest import data_dir

ROOT = Path(__file__).resolve().parents[1]


def train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierline", "router", "train", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_training_writes_a_bundle_that_refuses_other_models(tmp_path: Path) -> None:
    data = data_dir() / "routing" / "gsm8k-2tier"
    if not (data / "all.jsonl").exists():
        pytest.skip(f"no data at {data}")
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join((data / "all.jsonl").read_text().splitlines(True)[:300]))
    run = train(str(sample), "--prices", str(data / "prices.yaml"), "--out",
                str(tmp_path / "bundle"))
    assert run.returncode == 0, run.stderr
    assert "trained on 300 items" in run.stdout
    models = ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
    bundle = load_bundle(tmp_path / "bundle", models)
    assert set(bundle.models) == set(models)
    assert bundle.router.predict(["What is 2 + 2?"]).shape == (1, 2)
    with pytest.raises(PolicyError, match="trained for"):
        load_bundle(tmp_path / "bundle", [*models, "another-model"])


def test_bad_training_input_is_one_clear_line(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {a: {usd_per_1m_input: 1, usd_per_1m_output: 2}}\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "prompt": "hi"}\n{not json\n')
    for args, message in [
        ((str(tmp_path / "missing.jsonl"),), "cannot read"),
        ((str(broken),), "line"),
    ]:
        run = train(*args, "--prices", str(prices), "--out", str(tmp_path / "b"))
        assert run.returncode == 2, run.stderr
        assert message in run.stderr and "Traceback" not in run.stderr


def test_an_unpriced_model_or_an_empty_file_names_the_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tierline.router_train import command

    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {a: {usd_per_1m_input: 1, usd_per_1m_output: 2}}\n")
    outcome = {"response": "7", "score": 1.0, "prompt_tokens": 3, "completion_tokens": 1}
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": "1", "prompt": "p", "grader": {"kind": "recorded"},
                                "outcomes": {"a": outcome, "b": outcome}}) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    for dataset, message in [(data, "prices.yaml: no price for model 'b' of"),
                             (tmp_path / "empty.jsonl", "empty.jsonl: no items")]:
        run = CliRunner().invoke(command, [str(dataset), "--prices", str(prices),
                                           "--out", str(tmp_path / "b")])
        assert run.exit_code == 2 and message in run.output, run.output
