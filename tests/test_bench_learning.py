"""`tierline bench learning` and `router train --from-traffic`: a tiny stream end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import recorded
from tierline.router.learned.traffic import traffic_record

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = {"cheap": 0.7, "mid": 0.75, "top": 0.9}
PRICES = "models:\n" + "".join(f"  {m}: {{usd_per_1m_input: {p}, usd_per_1m_output: {p}}}\n"
                               for m, p in (("cheap", 0.1), ("mid", 0.2), ("top", 5.0)))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierline", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_stream_reports_every_window_against_the_best_model(tmp_path: Path) -> None:
    data, prices = tmp_path / "traffic.jsonl", tmp_path / "prices.yaml"
    data.write_text("".join(json.dumps(raw) + "\n"
                            for _, raw in recorded.lines(240, recorded.easy_or_hard(
                                "cheap", {"mid": 0.75, "top": 0.9}),
                                prompt=recorded.easy_hard_prompt)))
    prices.write_text(PRICES)
    run = _run("bench", "learning", "--traffic", str(data), "--prices", str(prices),
               "--retrain-every", "80", "--shadow-rate", "0.6", "--folds", "2", "--jobs", "1",
               "--json", str(tmp_path / "out.json"))
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["window"] for r in rows] == ["0", "1", "2", "all", "offline"]
    for r in rows[:4]:
        assert set(r) >= {"window", "requests", "accuracy", "usd", "accuracy_vs_best",
                          "cost_vs_best", "shadow_usd"}
        assert r["shadow_usd"] <= r["usd"]
    assert rows[0]["routed_by"].startswith("untrained")
    assert "request 80" in run.stderr


def test_training_from_traffic_promotes_or_says_why(tmp_path: Path) -> None:
    items = recorded.items(120, ACCURACY)
    traffic = tmp_path / "shadowed.jsonl"
    traffic.write_text("".join(json.dumps(traffic_record(it.id, it.prompt, "top",
                                                         dict(it.outcomes))) + "\n"
                               for it in items))
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    run = _run("router", "train", "--from-traffic", str(traffic), "--prices", str(prices),
               "--out", str(tmp_path / "bundle"), "--grader", "choice", "--folds", "2",
               "--jobs", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(("promoted", "not promoted"))
    if run.stdout.startswith("promoted"):
        assert (tmp_path / "bundle.npz").exists() and "bundle:" in run.stdout


def test_a_broken_traffic_line_names_its_line(tmp_path: Path) -> None:
    traffic = tmp_path / "shadowed.jsonl"
    traffic.write_text('{"prompt": "p"\n')
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    run = _run("router", "train", "--from-traffic", str(traffic), "--prices", str(prices),
               "--out", str(tmp_path / "bundle"))
    assert run.returncode == 2 and "line 1" in run.stderr and "Traceback" not in run.stderr


def test_a_young_stream_retrains_early_and_shadows_more_until_it_has_records(
        tmp_path: Path) -> None:
    data, prices = tmp_path / "traffic.jsonl", tmp_path / "prices.yaml"
    data.write_text("".join(json.dumps(raw) + "\n"
                            for _, raw in recorded.lines(240, recorded.easy_or_hard(
                                "cheap", {"mid": 0.75, "top": 0.9}),
                                prompt=recorded.easy_hard_prompt)))
    prices.write_text(PRICES)
    run = _run("bench", "learning", "--traffic", str(data), "--prices", str(prices),
               "--retrain-every", "100", "--first-retrain", "25", "--shadow-rate", "0.05",
               "--warm-shadow-rate", "1", "--warm-records", "60", "--folds", "2",
               "--jobs", "1", "--json", str(tmp_path / "out.json"))
    assert run.returncode == 0, run.stderr
    # retrained after 25, 50 and 100 requests, then every 100; every request shadowed
    # until 60 were
    assert [line.split(":")[0] for line in run.stderr.splitlines()
            if line.startswith("request ")] == ["request 25", "request 50", "request 100",
                                                 "request 200"]
    assert "request 25: 25 shadowed records: kept" in run.stderr  # fewer than 40 train nothing
    assert "request 50: 50 shadowed records: promoted" in run.stderr
