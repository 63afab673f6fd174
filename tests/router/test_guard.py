"""The cost guard as a table: on above the ceiling, one tier cheaper, reasons recorded."""

from __future__ import annotations

import pytest

from router.decide import Decision
from router.guard import guard_state, guarded
from router.policy import GuardSpec, policy_from_dict
from tests.workers.scripted import demo_policy

SPEC = GuardSpec(usd_per_1k_tokens_max=0.01)


@pytest.mark.parametrize(("usd", "tokens", "on"), [
    (0.0, 0, False), (0.01, 1000, False), (0.0101, 1000, True), (5.0, 0, False),
    (1.0, 10_000, True)])
def test_the_guard_is_on_only_above_the_ceiling(usd: float, tokens: int, on: bool) -> None:
    assert guard_state(SPEC, usd, tokens).on is on


def _decision(tier: str, model: str) -> Decision:
    return Decision("r1", "high", 0.9, "single", tier, model, {"rule": "band high"})


def test_new_work_starts_one_tier_cheaper_while_the_guard_is_on() -> None:
    policy = policy_from_dict(demo_policy({"kind": "single"}))
    on = guard_state(SPEC, 1.0, 10_000)
    [moved, kept] = guarded(policy, [_decision("t2", "sim-frontier"), _decision("t0", "sim-nano")],
                            on)
    assert (moved.tier, moved.model) == ("t1", "sim-mid")
    assert moved.reasons["guard"]["shift"] == "t2 → t1" and moved.reasons["rule"] == "band high"
    assert moved.reasons["guard"]["usd_per_1k_tokens"] == pytest.approx(0.1)
    assert (kept.tier, kept.model) == ("t0", "sim-nano")
    assert "none" in kept.reasons["guard"]["shift"]
    off = guard_state(SPEC, 0.0, 10_000)
    assert guarded(policy, [_decision("t2", "sim-frontier")], off)[0].tier == "t2"


@pytest.mark.parametrize("guard", [{"usd_per_1k_tokens_max": 0}, {"window_s": 30},
                                   {"usd_per_1k_tokens_max": 1, "window_s": -1},
                                   {"usd_per_1k_tokens_max": float("inf")}])
def test_a_broken_guard_is_refused(guard: dict[str, float]) -> None:
    with pytest.raises(Exception, match="guard"):
        policy_from_dict({**demo_policy({"kind": "single"}), "guard": guard})
