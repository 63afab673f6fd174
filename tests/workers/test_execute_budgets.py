"""The tier worker under token budgets: reserve, defer, fall back, refuse — never overspend.

Runs the real routing and execution code on SQLite, the in-thread simulator and the
in-memory absorber store with a scripted clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from tests.conftest import publish_nowhere
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.db import upgrade
from tierline.record.schema import charges, results
from tierline.router.live.absorber import Limits, scope_key
from tierline.router.policy import policy_from_dict
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore

ROOT = Path(__file__).resolve().parents[2]
ALL_T0 = {"low": "t0", "mid": "t0", "high": "t0"}


def _runtime(tmp_path: Path, sim_url: str, **changes: Any) -> Runtime:
    data = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    for model, limits in changes.pop("limits", {}).items():
        data["models"][model]["limits"] = limits
    data["classifier"]["band_tiers"] = changes.pop("band_tiers", ALL_T0)
    data.update(changes)
    policy = policy_from_dict(data)
    url = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    upgrade(url)
    return Runtime(Settings("memory://", url, ROOT / "policies" / "demo.yaml"), policy,
                   {"TIERLINE_SIM_URL": sim_url}, absorber=MemoryAbsorberStore())


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    from tierline.sim.fleet import fleet_from_policy
    from tierline.sim.server import start

    with start(fleet_from_policy(ROOT / "policies" / "demo.yaml", seed=3)) as server:
        yield server.url


def _accept(rt: Runtime, prompts: list[str]) -> list[str]:
    """Write requests through the producer code path, with no worker behind the broker."""
    client = Client(rt, publish=publish_nowhere)
    return client.submit_many(prompts, lane="batch").request_ids


def _run(rt: Runtime, ids: list[str]) -> list[execute.BundleReport]:
    outcomes: list[execute.BundleReport] = []
    routing.route(rt, ids, lambda bundle, _t, _l, _r: outcomes.append(
        execute.execute(rt, bundle)))
    return outcomes


def test_a_full_day_defers_the_rest_until_midnight_and_never_overspends(
        tmp_path: Path, sim_url: str) -> None:
    rt = _runtime(tmp_path, sim_url, limits={"sim-nano": {"tokens_per_day": 1000}})
    # Each reserves ~50 + 512 tokens and settles at its real usage (~50 + the answer).
    ids = _accept(rt, [f"request {i}: " + "please answer briefly " * 9 for i in range(40)])
    outcomes = _run(rt, ids)
    deferred = [rid for o in outcomes for rid in o.deferred]
    finished = sum(o.finished for o in outcomes)
    assert finished >= 2  # settled holds gave room back within the same bundle
    assert len(deferred) == 40 - finished > 0
    until_midnight = 86400 - time.time() % 86400
    assert max(o.retry_after_s for o in outcomes) == pytest.approx(until_midnight, abs=5)
    used = rt.absorber.usage(scope_key("sim-nano"), Limits(tokens_per_day=1000))
    assert used["held_tokens"] == 0 and used["in_flight"] == 0  # every hold settled
    assert used["settled_tokens"] <= 1000
    with rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(charges)).scalar_one() == finished
        settled = conn.execute(select(func.sum(charges.c.tokens_in + charges.c.tokens_out))
                               ).scalar_one()
    assert settled <= 1000


def test_with_the_fallback_policy_a_full_budget_hands_work_to_a_cheaper_model(
        tmp_path: Path, sim_url: str) -> None:
    rt = _runtime(tmp_path, sim_url, failure={"on_budget": "fallback"},
                  limits={"sim-mid": {"tokens_per_day": 600}},
                  band_tiers={"low": "t1", "mid": "t1", "high": "t1"})
    ids = _accept(rt, [f"explain hash maps {i}" for i in range(5)])
    outcomes = _run(rt, ids)
    assert sum(o.finished for o in outcomes) == 5 and not any(o.deferred for o in outcomes)
    with rt.engine.connect() as conn:
        models = dict(conn.execute(select(results.c.model, func.count())
                                   .group_by(results.c.model)).all())
    assert models == {"sim-mid": 1, "sim-nano": 4}  # cheaper, never the pricier frontier


def test_a_request_no_budget_can_ever_take_is_refused_at_intake(tmp_path: Path,
                                                                 sim_url: str) -> None:
    limits = {m: {"tokens_per_day": 600} for m in ("sim-nano", "sim-mid", "sim-frontier")}
    rt = _runtime(tmp_path, sim_url, limits=limits)
    rejected: list[tuple[int, str]] = []
    report = Client(rt).submit_many([{"prompt": "x" * 4000}], lane="batch",
                                    on_reject=lambda n, why: rejected.append((n, why)))
    assert report.accepted == 0
    assert rejected and "more than any model's whole daily budget (600)" in rejected[0][1]


def test_output_caps_by_band_cut_what_is_asked_and_reserved(tmp_path: Path, sim_url: str) -> None:
    data = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    rt = _runtime(tmp_path, sim_url, limits={"sim-nano": {"tokens_per_day": 100_000}},
                  strategy={"kind": "single", "output_caps_by_band": {"low": 3, "mid": 3}})
    ids = _accept(rt, ["please write a long story about the sea"] * 3)
    outcomes = _run(rt, ids)
    assert sum(o.finished for o in outcomes) == 3
    with rt.engine.connect() as conn:
        tokens_out = [row[0] for row in conn.execute(select(charges.c.tokens_out))]
    assert tokens_out and max(tokens_out) <= 3  # the simulator stops at max_tokens
    assert data["lanes"]["batch"]["max_output_tokens"] > 3


def test_a_tenants_own_share_limits_that_tenant_only(tmp_path: Path, sim_url: str) -> None:
    rt = _runtime(tmp_path, sim_url)
    data = rt.policy.model_dump()
    data["models"]["sim-nano"]["tenant_limits"] = {"acme": {"tokens_per_day": 1000}}
    rt = Runtime(rt.settings, policy_from_dict(data), rt.env, absorber=MemoryAbsorberStore())
    client = Client(rt, publish=publish_nowhere)
    prompt = "please answer briefly " * 9
    acme = client.submit_many([prompt] * 30, lane="batch", tenant="acme").request_ids
    other = client.submit_many([prompt] * 30, lane="batch", tenant="other").request_ids
    outcomes = _run(rt, acme + other)
    deferred = {rid for o in outcomes for rid in o.deferred}
    assert deferred and deferred <= set(acme)  # only acme waits
    used = rt.absorber.usage(scope_key("sim-nano", "acme"), Limits(tokens_per_day=1000))
    assert used["settled_tokens"] <= 1000 and used["held_tokens"] == 0
    with rt.engine.connect() as conn:
        paid = conn.execute(select(func.count()).select_from(charges)
                            .where(charges.c.tenant == "other")).scalar_one()
    assert paid == 30
