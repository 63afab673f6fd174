"""`tierline router train`: a bundle a policy can name, and clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import recorded
from tests.conftest import data_dir
from tierline.router.errors import PolicyError
from tierline.router.learned.bundle import load_bundle

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

    from tierline.training.router_train import command

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


def _synthetic(path: Path, n: int) -> None:
    """Three models, the priciest the most accurate."""
    lines = recorded.lines(n, {"small": 0.55, "medium": 0.7, "large": 0.85}, seed=1,
                           prompt=lambda i: f"question {i} " + "x" * (i % 9))
    path.write_text("".join(json.dumps(line) + "\n" for _, line in lines))


def test_a_target_prints_the_cheapest_live_strategy_that_reached_it(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from tierline.training.router_train import command

    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {small: {usd_per_1m_input: 0.1, usd_per_1m_output: 0.4},\n"
                      "  medium: {usd_per_1m_input: 1, usd_per_1m_output: 4},\n"
                      "  large: {usd_per_1m_input: 5, usd_per_1m_output: 20}}\n")
    data = tmp_path / "data.jsonl"
    _synthetic(data, 300)
    bundle = tmp_path / "bundle"
    run = CliRunner().invoke(command, [str(data), "--prices", str(prices), "--out", str(bundle),
                                       "--target", "0.95", "--folds", "3"])
    assert run.exit_code == 0, run.output
    head, snippet = run.output.split("In the policy:\n")
    assert "over 3 validation folds" in head and "of the best single model's accuracy" in head
    policy = yaml.safe_load(snippet)
    assert policy["tiers"]["t0"] == ["small"] and policy["tiers"][max(policy["tiers"])] == ["large"]
    assert policy["strategy"]["kind"] in ("cascade", "hybrid", "value")
    assert policy["strategy"]["options"]["bundle"] == str(bundle)
    assert load_bundle(bundle, ["small", "medium", "large"]).models  # trained on all of it

    tiny = tmp_path / "tiny.jsonl"
    _synthetic(tiny, 1)
    run = CliRunner().invoke(command, [str(tiny), "--prices", str(prices), "--out", str(bundle),
                                       "--target", "0.95"])
    assert run.exit_code == 2 and "too few for 5 validation folds" in run.output
