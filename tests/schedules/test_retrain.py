"""Nightly retraining: beat's entry follows the policy's ``learning`` and the environment,
and the task trains from the shadow outcomes recorded in Postgres, promoting a bundle only
when it is cheaper than the policy in force."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from celery.schedules import crontab
from sqlalchemy import insert, select, update

from tests.conftest import publish_nowhere
from tests.workers.scripted import DEMO, completion, route_here, runtime, serve
from tierline.config.settings import load_settings
from tierline.producer.client import Client
from tierline.record import bundles
from tierline.record.schema import bundles as bundles_table
from tierline.record.schema import results, shadow_outcomes
from tierline.record.shadow_record import traffic_records
from tierline.router.policy import policy_from_dict
from tierline.router.strategies.agreement import Agreement
from tierline.schedules.beat import build_schedule
from tierline.schedules.retrain import in_force_label, retrain, retrain_schedule_of
from tierline.workers.runtime import Runtime

LEARNING = {"shadow_rate": 0.1, "lanes": ["batch"], "usd_per_day_max": 1.0, "tiers": "all"}


def _policy(learning: dict[str, Any] | None = LEARNING) -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text())
    data["strategy"] = {"kind": "agreement", "options": {"panel": 2}}
    if learning is not None:
        data["learning"] = learning
    return data


def test_beat_retrains_on_the_policys_schedule_unless_the_environment_says_otherwise() -> None:
    policy = policy_from_dict(_policy({**LEARNING, "retrain_schedule": "0 4 * * *"}))
    default = retrain_schedule_of(policy, load_settings({}))
    entry = build_schedule(None, retrain_schedule=default)["retrain-router"]
    assert entry["task"] == "tierline.retrain_router"
    assert entry["schedule"] == crontab(minute="0", hour="4")
    assert entry["options"] == {"queue": "schedules"}
    off = retrain_schedule_of(policy, load_settings({"TIERLINE_RETRAIN_SCHEDULE": "off"}))
    assert "retrain-router" not in build_schedule(None, retrain_schedule=off)
    assert retrain_schedule_of(policy_from_dict(_policy(None)), load_settings({})) == "off"


def test_the_policy_in_force_is_the_promoted_bundle_else_the_zero_training_default() -> None:
    policy = policy_from_dict(_policy())
    assert in_force_label(policy, None) == "untrained agree-2>top"
    assert in_force_label(policy, {"label": "value-3$ δ=0.3"}) == "value-3$ δ=0.3"


def _traffic(rt: Runtime, n: int) -> None:
    """``n`` shadowed requests: the cheapest model agrees with the top on short questions,
    the middle one on most; every tier's answer recorded, as ``tiers: all`` does."""
    client = Client(rt, publish=publish_nowhere)
    prompts = [f"what is {k} plus {k}?" if k % 3 else
               f"prove a property of the sequence starting {k} {k + 1} {k + 3} in detail"
               for k in range(n)]
    ids = client.submit_many(prompts, lane="batch").request_ids
    now_s = time.time()
    rows = []
    for k, rid in enumerate(ids):
        right = str(2 * k)
        answers = {"sim-nano": right if k % 3 else "0", "sim-mid": right if k % 7 else "1",
                   "sim-frontier": right}
        for model, answer in answers.items():
            rows.append({"id": f"{rid}/{model}", "request_id": rid, "model": model,
                         "tier": rt.policy.tier_of(model), "shadow": model != "sim-nano",
                         "response": f"The answer is {answer}", "answer": answer,
                         "tokens_in": 30, "tokens_out": 20, "usd": 0, "top_model": "sim-frontier",
                         "agrees_with_top": answer == right, "gold_label": None,
                         "agrees_with_gold": None, "recorded_at": now_s + k, "day": 0})
    with rt.engine.begin() as conn:
        conn.execute(insert(shadow_outcomes), rows)


def test_retraining_promotes_a_cheaper_bundle_from_recorded_shadow_outcomes(
        tmp_path: Path, own_postgres_url: str) -> None:
    rt = runtime(tmp_path, "http://127.0.0.1:9", _policy(), own_postgres_url)
    _traffic(rt, 150)
    done = retrain(rt, time.time(), tmp_path / "bundles", folds=3)
    assert done["promoted"], done
    assert done["records"] == 150 and done["in_force"] == "untrained agree-2>top"
    with rt.engine.connect() as conn:
        promoted = bundles.promoted(conn)
    assert promoted is not None and promoted["id"] == done["bundle_id"]
    assert promoted["metrics"]["trained_by"] == "beat"
    assert promoted["policy"]["strategy"]["options"]["bundle"] == done["path"]
    assert Path(done["path"]).with_suffix(".npz").exists()


def test_workers_route_with_the_promoted_bundle_once_the_policy_says_so(
        tmp_path: Path, own_postgres_url: str) -> None:
    rt = runtime(tmp_path, "http://127.0.0.1:9",
                 _policy({**LEARNING, "route_with": "promoted"}), own_postgres_url)
    assert isinstance(rt.learned[1], Agreement)  # nothing promoted: the policy's own
    _traffic(rt, 150)
    done = retrain(rt, time.time(), tmp_path / "bundles", folds=3)
    assert done["promoted"]
    assert isinstance(rt.learned[1], Agreement)  # read again at most once a minute
    rt.promoted.checked_at -= 60
    bundle, strategy = rt.learned
    assert not isinstance(strategy, Agreement) and bundle.models
    with rt.engine.begin() as conn:
        conn.execute(update(bundles_table).values(status="retired"))
    rt.promoted.checked_at -= 60
    assert isinstance(rt.learned[1], Agreement)  # none promoted any more: the policy's again


def _answers(model: str, asked: str) -> tuple[int, dict[str, Any]]:
    """The cheapest model is wrong on every third question, the middle one on every seventh."""
    k = int(asked.split()[2])
    wrong = (model == "sim-nano" and k % 3 == 0) or (model == "sim-mid" and k % 7 == 0)
    return 200, completion(f"The answer is {k + 1 if wrong else 2 * k}")


def test_retraining_learns_from_what_live_shadow_calls_recorded(
        tmp_path: Path, own_postgres_url: str) -> None:
    with serve(_answers) as url:
        rt = runtime(tmp_path, url, _policy({**LEARNING, "shadow_rate": 1.0}), own_postgres_url)
        # One request at a time: the record then holds them oldest first in the order asked.
        # A bundle's outcomes share one recorded_at, and their order followed the random part
        # of the requests' ids: the folds moved, and 2-4 runs in 10 promoted nothing.
        for k in range(120):
            route_here(rt, [f"what is {k} plus {k}?"])
    with rt.engine.connect() as conn:
        recorded = traffic_records(conn)
    assert len(recorded) == 120
    assert all(set(r["outcomes"]) == {"sim-nano", "sim-mid", "sim-frontier"} for r in recorded)
    done = retrain(rt, time.time(), tmp_path / "bundles", folds=3)
    assert done["records"] == 120 and done["in_force"] == "untrained agree-2>top"
    # A learned point beats asking two tiers on every request (on this traffic: 94% of the
    # top tier's answers at 16% of its cost).
    assert done["promoted"], done
    assert Path(done["path"]).with_suffix(".npz").exists()
    with rt.engine.connect() as conn:
        promoted = bundles.promoted(conn)
    assert promoted is not None and promoted["id"] == done["bundle_id"]
    # Workers told to route with the promoted bundle step with it: its trained judge gives
    # each answer's confidence, where the zero-training default gives 1, 0.5 or 0.
    with serve(_answers) as url:
        follows = runtime(tmp_path, url, _policy({**LEARNING, "shadow_rate": 0.0,
                                                  "route_with": "promoted"}), own_postgres_url)
        route_here(follows, [f"what is {k} plus {k}?" for k in range(200, 220)])
    with follows.engine.connect() as conn:
        calls = conn.execute(select(results.c.detail).where(
            results.c.request_id.not_in(select(shadow_outcomes.c.request_id)))).scalars().all()
    assert len(calls) == 20
    assert all(d["confidence"] not in (0.0, 0.5, 1.0) for d in calls), calls[:3]


def test_too_little_shadowed_traffic_trains_nothing_and_records_nothing(
        tmp_path: Path, own_postgres_url: str) -> None:
    rt = runtime(tmp_path, "http://127.0.0.1:9", _policy(), own_postgres_url)
    _traffic(rt, 30)
    done = retrain(rt, time.time(), tmp_path / "bundles", folds=3)
    assert not done["promoted"] and "fewer than 40" in done["why"]
    with rt.engine.connect() as conn:
        assert bundles.listed(conn) == []
    assert not (tmp_path / "bundles").exists()
