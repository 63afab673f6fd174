"""A router worker with ``classifier.kind: learned`` sends each request to the tier its
trained router picks, records why, and the tier worker answers there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests import recorded
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.schema import decisions, requests, results
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.training import train_routing

PRICES = {"sim-nano": (0.1, 0.4), "sim-mid": (0.8, 3.2), "sim-frontier": (5.0, 20.0)}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle whose router learned that sim-nano gets the easy prompts right only."""
    items = recorded.items(240, recorded.easy_or_hard("sim-nano", {"sim-mid": 0.6,
                                                                   "sim-frontier": 0.9}),
                           prompt=recorded.easy_hard_prompt)
    path = tmp_path_factory.mktemp("bundle") / "routing"
    save_bundle(bundle_of(train_routing(items, PRICES)), path)
    return path


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(lambda model, _asked: (200, completion(f"{model} says (A)"))) as url:
        yield url


def test_the_learned_router_picks_the_tier_and_says_why(tmp_path: Path, models_url: str,
                                                        artifact: Path) -> None:
    policy = demo_policy({"kind": "single"})
    policy["classifier"] = {"kind": "learned", "artifact": str(artifact),
                            "band_tiers": {"low": "t0", "mid": "t1", "high": "t2"}}
    rt = runtime(tmp_path, models_url, policy)
    route_here(rt, [recorded.easy_hard_prompt(900), recorded.easy_hard_prompt(901)])
    with rt.engine.connect() as conn:
        rows = conn.execute(select(decisions.c.band, decisions.c.model,
                                   decisions.c.reasons, results.c.model.label("answered"))
                            .select_from(requests)
                            .join(decisions, decisions.c.request_id == requests.c.id)
                            .join(results, results.c.request_id == requests.c.id)
                            .order_by(requests.c.seq)).all()
    easy, hard = rows
    assert (easy.band, easy.model, easy.answered) == ("low", "sim-nano", "sim-nano")
    assert (hard.band, hard.model, hard.answered) == ("high", "sim-frontier", "sim-frontier")
    assert set(easy.reasons["p_correct"]) == set(PRICES)
