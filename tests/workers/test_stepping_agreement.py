"""The zero-training default live: the tier worker asks the two cheapest tiers, accepts
their answer when they agree and asks the top tier when they do not, with no bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.schema import attempts, results
from tierline.workers.runtime import Runtime


def _answer(model: str, asked: str) -> tuple[int, dict[str, object]]:
    # The cheapest tiers agree on prompts that say "easy" and disagree on the others.
    letter = "A" if "easy" in asked or model == "sim-nano" else "B"
    return 200, completion(f"Working... the answer is ({letter}).", 40, 10)


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_answer) as url:
        yield url


def _ended(rt: Runtime) -> tuple[list[str], str, dict[str, object]]:
    with rt.engine.connect() as conn:
        tried = [row.model for row in conn.execute(select(attempts.c.model)
                                                   .order_by(attempts.c.seq))]
        row = conn.execute(select(results.c.model, results.c.detail)).one()
    return tried, row.model, row.detail


def _tiers(rt: Runtime) -> list[str]:
    return [rt.policy.tiers[t][0] for t in rt.policy.tier_names]


def test_two_cheap_tiers_that_agree_answer_without_the_top_tier(
        tmp_path: Path, models_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "agreement"}))
    route_here(rt, ["an easy question: answer with a letter"])
    tried, model, detail = _ended(rt)
    cheap, second, *_ = _tiers(rt)
    assert sorted(tried) == sorted([cheap, second])
    assert model == second and detail["answer"] == "A" and detail["aggregate"] is True


def test_cheap_tiers_that_disagree_escalate_to_the_top_tier(
        tmp_path: Path, models_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "agreement"}))
    route_here(rt, ["a hard question: answer with a letter"])
    tried, model, detail = _ended(rt)
    tiers = _tiers(rt)
    assert sorted(tried) == sorted([tiers[0], tiers[1], tiers[-1]])
    assert model == tiers[-1] and detail["answer"] == "B"
    assert detail["chain"][-1] == tiers[-1]
