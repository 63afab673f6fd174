"""Early stop in the tier worker, over the simulator's real HTTP: an answer cut short for
low confidence is paid for and climbs a tier; with nowhere to climb, it stands, marked."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.workers.scripted import a_minute_later, demo_policy, route_here, runtime
from tierline.record.schema import attempts, charges, results
from tierline.router.live.absorber import Limits, scope_key
from tierline.router.live.early_stop import EARLY_STOP
from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.server import start
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime

QUICK = {"ttft_s": 0.0, "per_token_s": 0.0, "jitter_s": 0.0, "cold_start_s": 0.0}
# The cheap model gets every answer wrong (low logprobs); the others get them right.
FLEET = Fleet({"sim-nano": ModelProfile(**QUICK, accuracy=0.0, answer_tokens=64),
               "sim-mid": ModelProfile(**QUICK, accuracy=1.0, answer_tokens=64),
               "sim-frontier": ModelProfile(**QUICK, accuracy=1.0, answer_tokens=64)}, seed=4)
EARLY = {"min_tokens": 8, "window": 4, "min_mean_logprob": -1.0}
# Free text no judge can score: without early stop, a cascade keeps the first answer.
PROMPT = "Explain how a hash map handles collisions, with an example. " * 8


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with start(FLEET, port=0) as sim:
        yield sim.url


def _run(tmp_path: Path, url: str, strategy: dict[str, Any]) -> Runtime:
    rt = runtime(tmp_path, url, demo_policy(strategy))
    route_here(rt, [PROMPT])
    return rt


def _rows(rt: Runtime) -> tuple[list[Any], list[Any], list[Any]]:
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.model, results.c.detail, results.c.usd)).all()
        tried = conn.execute(select(attempts.c.model, attempts.c.ok, attempts.c.tokens_out)
                             .order_by(attempts.c.seq)).all()
        paid = conn.execute(select(charges.c.model, charges.c.tokens_out, charges.c.usd)
                            .order_by(charges.c.model.desc())).all()
    return list(ended), list(tried), list(paid)


def test_an_early_stopped_cheap_answer_escalates_and_both_attempts_are_charged(
        tmp_path: Path, sim_url: str) -> None:
    rt = _run(tmp_path, sim_url, {"kind": "cascade", "confidence_bar": 0.7, "early_stop": EARLY})
    ended, tried, paid = _rows(rt)
    assert [(m, ok) for m, ok, _ in tried] == [("sim-nano", True), ("sim-mid", True)]
    cut, whole = tried[0][2], tried[1][2]
    assert cut == EARLY["min_tokens"] < whole  # nano paid only for the tokens it generated
    assert [(m, out) for m, out, _ in paid] == [("sim-nano", cut), ("sim-mid", whole)]
    assert all(usd > 0 for _, _, usd in paid)
    [(model, detail, usd)] = ended
    assert model == "sim-mid" and detail is None
    assert Decimal(usd) == sum(Decimal(u) for _, _, u in paid)


def test_with_nowhere_to_climb_the_cut_answer_stands_with_its_finish_reason(
        tmp_path: Path, sim_url: str) -> None:
    rt = _run(tmp_path, sim_url, {"kind": "single", "early_stop": EARLY})
    ended, tried, paid = _rows(rt)
    assert tried == [("sim-nano", True, EARLY["min_tokens"])] and len(paid) == 1
    assert [(m, d) for m, d, _ in ended] == [("sim-nano", {"finish_reason": EARLY_STOP})]


def test_without_early_stop_the_unsure_answer_is_kept_whole(tmp_path: Path, sim_url: str
                                                             ) -> None:
    rt = _run(tmp_path, sim_url, {"kind": "cascade", "confidence_bar": 0.7})
    ended, tried, _ = _rows(rt)
    assert [m for m, _, _ in tried] == ["sim-nano"] and tried[0][2] > EARLY["min_tokens"]
    assert [(m, d) for m, d, _ in ended] == [("sim-nano", None)]


def test_a_cut_answer_kept_at_a_deferral_still_climbs_when_it_comes_back(
        tmp_path: Path, sim_url: str) -> None:
    data = demo_policy({"kind": "cascade", "confidence_bar": 0.7, "early_stop": EARLY})
    data["models"]["sim-mid"]["limits"] = {"requests_per_minute": 1}
    rt = runtime(tmp_path, sim_url, data)
    rt.absorber.reserve_many(scope_key("sim-mid", None), Limits.from_model_limits(
        rt.policy.models["sim-mid"].limits), [1])  # this minute's one call is taken
    [outcome] = route_here(rt, [PROMPT])
    assert len(outcome.deferred) == 1
    rt = a_minute_later(rt)
    execute.execute(rt, outcome.deferred, resumed=True)
    ended, tried, _ = _rows(rt)
    # Kept with its finish reason, the cut answer counts as weak again (free text the
    # judge cannot score would otherwise stand): one nano call, then the climb.
    assert [(m, ok) for m, ok, _ in tried] == [("sim-nano", True), ("sim-mid", True)]
    assert [(m, d) for m, d, _ in ended] == [("sim-mid", None)]
