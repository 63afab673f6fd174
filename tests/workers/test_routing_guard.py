"""The router worker reads the last window's spend from the record: above the guard's
ceiling, new requests start one tier cheaper and their decision says why."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tests.conftest import publish_nowhere
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.producer.client import Client
from tierline.record.schema import attempts, decisions, results
from tierline.workers import routing
from tierline.workers.runtime import Runtime


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(lambda _m, _a: (200, completion("ok"))) as url:
        yield url


def _guarded_runtime(tmp_path: Path, url: str) -> Runtime:
    data = demo_policy({"kind": "single"})
    data["classifier"]["band_tiers"] = {"low": "t2", "mid": "t2", "high": "t2"}
    data["guard"] = {"usd_per_1k_tokens_max": 0.01, "window_s": 30}
    return runtime(tmp_path, url, data)


def _spent(rt: Runtime, usd: float, tokens: int, started_at: float, shadow: bool = False
           ) -> None:
    client = Client(rt, publish=publish_nowhere)
    [rid] = client.submit_many(["paid earlier"], lane="batch").request_ids
    with rt.engine.begin() as conn:
        conn.execute(insert(attempts).values(
            id=f"{rid}/0", request_id=rid, seq=0, model="sim-frontier", tier="t2", ok=True,
            tokens_in=tokens // 2, tokens_out=tokens - tokens // 2, usage_estimated=False,
            latency_s=1.0, usd=usd, started_at=started_at, shadow=shadow))


def _route_one(rt: Runtime) -> dict[str, object]:
    client = Client(rt, publish=publish_nowhere)
    [rid] = client.submit_many(["a new request"], lane="batch").request_ids
    routing.route(rt, [rid], lambda *_: None)
    with rt.engine.connect() as conn:
        row = conn.execute(select(decisions).where(decisions.c.request_id == rid)).one()
    return {"tier": row.tier, "model": row.model, "reasons": row.reasons}


def test_spend_above_the_ceiling_moves_new_work_one_tier_cheaper(
        tmp_path: Path, models_url: str) -> None:
    rt = _guarded_runtime(tmp_path, models_url)
    _spent(rt, usd=1.0, tokens=10_000, started_at=time.time() - 5)  # 0.1 USD per 1k tokens
    decided = _route_one(rt)
    assert (decided["tier"], decided["model"]) == ("t1", "sim-mid")
    assert decided["reasons"]["guard"]["shift"] == "t2 → t1"  # type: ignore[index]


def test_spend_outside_the_window_leaves_routing_alone(tmp_path: Path, models_url: str) -> None:
    rt = _guarded_runtime(tmp_path, models_url)
    _spent(rt, usd=1.0, tokens=10_000, started_at=time.time() - 120)
    decided = _route_one(rt)
    assert decided["tier"] == "t2" and "guard" not in decided["reasons"]  # type: ignore[operator]


def test_shadow_calls_spend_does_not_move_routing(tmp_path: Path, models_url: str) -> None:
    rt = _guarded_runtime(tmp_path, models_url)
    _spent(rt, usd=1.0, tokens=10_000, started_at=time.time() - 5, shadow=True)
    decided = _route_one(rt)
    assert decided["tier"] == "t2" and "guard" not in decided["reasons"]  # type: ignore[operator]


def test_a_step_machine_is_capped_and_counted_while_the_guard_is_on(
        tmp_path: Path, models_url: str) -> None:
    from tierline import metrics

    data = demo_policy({"kind": "agreement"})
    data["guard"] = {"usd_per_1k_tokens_max": 0.01, "window_s": 30}
    rt = runtime(tmp_path, models_url, data)
    before = metrics.GUARD.labels("cap")._value.get()
    _spent(rt, usd=1.0, tokens=10_000, started_at=time.time() - 5)
    decided = _route_one(rt)
    guard = decided["reasons"]["guard"]  # type: ignore[index]
    assert guard["cap"] == "t1" and guard["shift"].startswith("cap t2 → t1")
    assert metrics.GUARD.labels("cap")._value.get() == before + 1


def test_a_capped_step_machine_never_calls_above_its_cap(tmp_path: Path) -> None:
    # The cheap tiers disagree, so uncapped the agreement machine would ask the top tier;
    # while the guard is on it may not, and the best answer paid for below the cap is taken.
    def answer(model: str, _asked: str) -> tuple[int, dict[str, object]]:
        letter = "A" if model == "sim-nano" else "B"
        return 200, completion(f"Working... the answer is ({letter}).", 40, 10)

    data = demo_policy({"kind": "agreement"})
    data["guard"] = {"usd_per_1k_tokens_max": 0.01, "window_s": 30}
    with serve(answer) as url:
        rt = runtime(tmp_path, url, data)
        _spent(rt, usd=1.0, tokens=10_000, started_at=time.time() - 5)
        route_here(rt, ["a hard question: answer with a letter"])
    top = rt.policy.top_model()
    with rt.engine.connect() as conn:
        asked = {m for m in conn.execute(select(attempts.c.model).where(  # not _spent's row
            attempts.c.started_at > time.time() - 4)).scalars()}
        answered = conn.execute(select(results.c.model)).scalars().all()
    assert asked and top not in asked
    assert answered and top not in answered
