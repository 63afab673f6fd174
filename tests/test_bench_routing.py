"""`tierline bench routing`: a smoke run on real recorded data, and clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tierline.bench.routing import command

DATA = Path(os.environ.get("TIERLINE_DATA",
                           Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
MMLU = DATA / "routing" / "mmlu-pro"

PRICES = "models:\n  small: {usd_per_1m_input: 0.1, usd_per_1m_output: 0.2}\n" \
         "  large: {usd_per_1m_input: 1.0, usd_per_1m_output: 2.0}\n"


def _line(i: int, drop: str | None = None) -> str:
    row = {"id": f"t/{i}", "prompt": f"question {i}", "grader": {"kind": "choice", "answer": "A"},
           "outcomes": {m: {"response": "the answer is (A)", "answer": "A", "score": 1.0,
                            "prompt_tokens": 10, "completion_tokens": 5}
                        for m in ("small", "large")}}
    if drop:
        del row[drop]
    return json.dumps(row)


def _run(tmp_path: Path, lines: list[str], prices: str = PRICES):  # type: ignore[no-untyped-def]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(lines) + "\n")
    (tmp_path / "p.yaml").write_text(prices)
    return CliRunner().invoke(command, ["--train", str(data), "--prices",
                                        str(tmp_path / "p.yaml")])


def test_a_line_missing_a_field_is_named_and_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, [_line(1), _line(2), _line(3, drop="prompt")])
    assert result.exit_code == 2
    assert "line 3" in result.output and "prompt" in result.output
    assert "Traceback" not in result.output


def test_a_model_without_price_is_named_and_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, [_line(i) for i in range(10)],
                  prices="models:\n  small: {usd_per_1m_input: 1, usd_per_1m_output: 1}\n")
    assert result.exit_code == 2 and "'large'" in result.output


def test_an_empty_train_split_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, [])
    assert result.exit_code == 2 and "empty" in result.output


def test_not_json_is_named_with_its_line(tmp_path: Path) -> None:
    result = _run(tmp_path, [_line(1), "{nope"])
    assert result.exit_code == 2 and "line 2" in result.output


@pytest.mark.skipif(not (MMLU / "train.jsonl").exists(), reason="shared data absent")
def test_smoke_on_a_slice_of_real_recorded_outcomes(tmp_path: Path) -> None:
    with (MMLU / "train.jsonl").open(encoding="utf-8") as f:
        head = [next(f) for _ in range(300)]
    data = tmp_path / "slice.jsonl"
    data.write_text("".join(head))
    out_json = tmp_path / "rows.json"
    args = ["--train", str(data), "--prices", str(MMLU / "prices.yaml"), "--split", "0.3",
            "--seed", "1", "--json", str(out_json), "--save-router", str(tmp_path / "router"),
            "--save-bundle", str(tmp_path / "bundle")]
    plot = pytest.importorskip("matplotlib") and tmp_path / "frontier.png"
    result = CliRunner().invoke(command, [*args, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "frontiers" in result.output and "cascade-2" in result.output
    rows = json.loads(out_json.read_text())
    assert {"strategy", "accuracy", "usd", "accuracy_vs_best", "cost_vs_best"} <= set(rows[0])
    assert any(r["method"] == "frugalgpt" for r in rows)
    chosen = {c for r in rows for c in r["chosen_for"]}  # the goal table's choices, per row
    assert chosen == {"aiq", "cost_to_95", "cost_to_99", "accuracy"}
    assert all(r["kind"] == "tierline" for r in rows if r["chosen_for"])
    assert sum("accuracy" in r["chosen_for"] for r in rows) == 1
    assert plot.stat().st_size > 10_000
    assert (tmp_path / "router.npz").exists() and (tmp_path / "router.json").exists()
    assert (tmp_path / "bundle.npz").exists() and "goal" in result.output


def _varied(n: int, models: tuple[str, ...] = ("small", "large")) -> list[str]:
    """Items where the first model is right on every other item and the second on 9 in 10."""
    lines = []
    for i in range(n):
        right = dict(zip(models, (i % 2 == 0, i % 10 != 3), strict=True))
        outcomes = {m: {"response": f"the answer is ({'A' if right[m] else 'B'})",
                        "answer": "A" if right[m] else "B", "score": float(right[m]),
                        "prompt_tokens": 10 + i % 3, "completion_tokens": 5} for m in models}
        lines.append(json.dumps({"id": f"v/{i}", "prompt": f"question {i}\u2028 part two",
                                 "grader": {"kind": "choice", "answer": "A"},
                                 "outcomes": outcomes}, ensure_ascii=False))
    return lines


def test_non_utf8_bytes_are_named_with_their_line(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(("\n".join([_line(1), _line(2)]) + "\n").encode() + b'{"id": "caf\xe9"}\n')
    (tmp_path / "p.yaml").write_text(PRICES)
    result = CliRunner().invoke(command, ["--train", str(data), "--prices",
                                          str(tmp_path / "p.yaml")])
    assert result.exit_code == 2, result.output
    assert "d.jsonl: line 3: not UTF-8" in result.output and "Traceback" not in result.output


def test_an_empty_file_is_named(tmp_path: Path) -> None:
    result = _run(tmp_path, [""])
    assert result.exit_code == 2 and "d.jsonl: no items" in result.output


def test_an_item_missing_one_model_names_the_line_and_model(tmp_path: Path) -> None:
    short = json.loads(_line(2))
    del short["outcomes"]["large"]
    result = _run(tmp_path, [_line(1), json.dumps(short)])
    assert result.exit_code == 2 and "line 2: no outcome for model 'large'" in result.output


@pytest.mark.parametrize("spec", ["{usd_per_1m_input: -1, usd_per_1m_output: 2}",
                                  "{usd_per_1m_input: .nan, usd_per_1m_output: 2}", "3"])
def test_bad_prices_are_named(tmp_path: Path, spec: str) -> None:
    result = _run(tmp_path, [_line(i) for i in range(10)],
                  prices=PRICES.replace("{usd_per_1m_input: 1.0, usd_per_1m_output: 2.0}", spec))
    assert result.exit_code == 2 and "p.yaml: models.large" in result.output


def test_test_models_must_match_train_models_before_any_training(tmp_path: Path) -> None:
    test = tmp_path / "t.jsonl"
    test.write_text("\n".join(_varied(4, ("small", "other"))) + "\n")
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(_varied(40)) + "\n")
    (tmp_path / "p.yaml").write_text(PRICES)
    result = CliRunner().invoke(command, ["--train", str(data), "--test", str(test),
                                          "--prices", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert "t.jsonl: models differ" in result.output and "['other']" in result.output
    assert "validation" not in result.output  # refused before anything was trained


def test_a_free_best_model_and_an_unused_price_give_finite_json(tmp_path: Path) -> None:
    prices = ("models:\n  small: {usd_per_1m_input: 0.1, usd_per_1m_output: 0.2}\n"
              "  large: {usd_per_1m_input: 0, usd_per_1m_output: 0}\n"
              "  unused: {usd_per_1m_input: 9, usd_per_1m_output: 9}\n")
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(_varied(80)) + "\n")  # U+2028 inside prompts: one item a line
    (tmp_path / "p.yaml").write_text(prices)
    out_json = tmp_path / "rows.json"
    result = CliRunner().invoke(command, ["--train", str(data), "--prices",
                                          str(tmp_path / "p.yaml"), "--json", str(out_json)])
    assert result.exit_code == 0, result.output
    assert "train 56 items, test 24 items" in result.output
    assert "costs are shares of small's USD" in result.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    rows = json.loads(out_json.read_text(), parse_constant=refuse)
    assert {r["cost_unit"] for r in rows} == {"small"} and rows[0]["best_single"] == "large"


@pytest.mark.parametrize("folds", ["1", "-2"])
def test_a_single_or_negative_fold_count_is_refused(tmp_path: Path, folds: str) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(_varied(40)) + "\n")
    (tmp_path / "p.yaml").write_text(PRICES)
    result = CliRunner().invoke(command, ["--train", str(data), "--prices",
                                          str(tmp_path / "p.yaml"), "--folds", folds])
    assert result.exit_code == 2
    assert "--folds must be 0 (no headline) or at least 2" in result.output


def test_jobs_below_one_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(_varied(40)) + "\n")
    (tmp_path / "p.yaml").write_text(PRICES)
    result = CliRunner().invoke(command, ["--train", str(data), "--prices",
                                          str(tmp_path / "p.yaml"), "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs must be at least 1, got 0" in result.output


def test_folds_side_by_side_choose_as_one_at_a_time(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(_varied(300)) + "\n")
    (tmp_path / "p.yaml").write_text(PRICES)
    rows = {}
    for jobs in ("1", "2"):
        out_json = tmp_path / f"rows-{jobs}.json"
        result = CliRunner().invoke(command, ["--train", str(data), "--prices",
                                              str(tmp_path / "p.yaml"), "--folds", "3",
                                              "--jobs", jobs, "--json", str(out_json)])
        assert result.exit_code == 0, result.output
        rows[jobs] = json.loads(out_json.read_text())
    assert any(r["chosen_for"] for r in rows["1"])
    assert rows["1"] == rows["2"]


def test_the_goal_table_says_by_how_much() -> None:
    from tierline.bench.routing import _margin
    from tierline.router.evaluation.goal import Verdict

    cheaper = Verdict("cost_to_95", "value-3$", 0.109, "frugalgpt", 0.163, True)
    dearer = Verdict("cost_to_99", "cascade-2", 0.340, "frugalgpt", 0.338, False)
    assert _margin(cheaper, cost=True) == "33% cheaper"
    assert _margin(dearer, cost=True) == "1% dearer"
    assert _margin(Verdict("aiq", "v", 1.011, "f", 0.9692, True), cost=False) == "+0.0418"
    assert _margin(Verdict("cost_to_99", "v", None, "f", 0.3, False), cost=True) == ""
