"""The learned step machine serves a first call with its model's 4-bit variant when the
bundle's P(variant correct) clears the bar and the output budget is long."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests import recorded
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.schema import attempts, results
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.training import train_routing
from tierline.workers.runtime import Runtime

# How often each model is right in the recorded outcomes the bundle learns from.
ACCURACY = {"sim-nano": 0.1, "sim-mid": 0.2, "sim-frontier": 1.0, "sim-frontier-4bit": 0.97}
PRICES = {"sim-nano": (0.1, 0.4), "sim-mid": (0.8, 3.2), "sim-frontier": (5.0, 20.0),
          "sim-frontier-4bit": (2.0, 8.0)}


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(lambda _model, _asked: (200, completion("the answer is (A)", 40, 30))) as url:
        yield url


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "routing"
    save_bundle(bundle_of(train_routing(recorded.items(160, ACCURACY), PRICES)), path)
    return path


def _run(tmp_path: Path, url: str, bundle: Path, bar: float) -> Runtime:
    # The learned pick: the cheapest tier model whose P(correct) clears the bar.
    data = demo_policy({"kind": "learned", "confidence_bar": bar,
                        "options": {"bundle": str(bundle)}})
    data["models"]["sim-frontier-4bit"] = {**data["models"]["sim-frontier"],
                                           "usd_per_1m_input": 2.0, "usd_per_1m_output": 8.0}
    data["models"]["sim-frontier"]["quantized"] = {
        "model": "sim-frontier-4bit", "quality_ratio": 0.9, "min_output_tokens": 256}
    rt = runtime(tmp_path, url, data)
    route_here(rt, [{"prompt": "question 7", "max_output_tokens": 512}])
    return rt


def _ended(rt: Runtime) -> tuple[list[str], str, dict[str, Any]]:
    with rt.engine.connect() as conn:
        tried = [row.model for row in conn.execute(select(attempts.c.model))]
        row = conn.execute(select(results.c.model, results.c.detail)).one()
    return tried, row.model, row.detail


def test_the_variant_answers_when_its_learned_quality_clears_the_bar(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _run(tmp_path, models_url, bundle_path, bar=0.7)
    bundle, _ = rt.learned
    p = dict(zip(bundle.models, bundle.router.predict(["question 7"])[0], strict=True))
    assert p["sim-mid"] < 0.7 <= p["sim-frontier-4bit"]  # what the bundle learned
    tried, model, detail = _ended(rt)
    assert tried == ["sim-frontier-4bit"] and model == "sim-frontier-4bit"
    [why] = detail["quantized"]
    assert why["model"] == "sim-frontier" and why["chosen"] == "sim-frontier-4bit"
    assert why["basis"] == "P(sim-frontier-4bit)" and why["bar"] == 0.7
    assert why["expected_quality"] == pytest.approx(p["sim-frontier-4bit"], abs=1e-4)
    assert detail["chain"] == ["sim-frontier-4bit"]


def test_the_full_model_answers_when_the_variant_falls_short_of_the_bar(
        tmp_path: Path, models_url: str, bundle_path: Path) -> None:
    rt = _run(tmp_path, models_url, bundle_path, bar=0.99)
    tried, model, detail = _ended(rt)
    assert tried == ["sim-frontier"] and model == "sim-frontier"
    [why] = detail["quantized"]
    assert why["chosen"] == "sim-frontier" and why["expected_quality"] < 0.99
