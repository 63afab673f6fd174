"""The cost guard as a table: on above the ceiling, one tier cheaper, reasons recorded."""

from __future__ import annotations

import pytest

from tests.workers.scripted import demo_policy
from tierline.router.live.decide import Decision
from tierline.router.live.guard import Capped, cap_of, guard_state, guarded, machine_for
from tierline.router.policy import GuardSpec, policy_from_dict
from tierline.router.strategies.agreement import Agreement
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView

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


def _agreement_policy():  # type: ignore[no-untyped-def]
    return policy_from_dict(demo_policy({"kind": "agreement", "options": {"panel": 1}}))


def test_a_step_machine_is_capped_below_the_top_tier_instead_of_moved() -> None:
    policy = _agreement_policy()
    on = guard_state(SPEC, 1.0, 10_000)
    [capped_one] = guarded(policy, [_decision("t0", "sim-nano")], on, steps=True)
    assert (capped_one.tier, capped_one.model) == ("t0", "sim-nano")
    assert cap_of(capped_one) == "t1" and "cap t2 → t1" in capped_one.reasons["guard"]["shift"]
    off = guard_state(SPEC, 0.0, 10_000)
    assert cap_of(guarded(policy, [_decision("t0", "sim-nano")], off, steps=True)[0]) is None


def _wrong(model: str) -> Attempt:
    return Attempt(model, "2 + 2 = 5, so the answer is 5", "5")


def test_a_capped_machine_asks_the_cap_tier_where_it_would_ask_the_top() -> None:
    policy = _agreement_policy()
    machine = Agreement(("sim-nano", "sim-mid", "sim-frontier"), panel=1)
    view = RequestView("What is 2 + 2?")
    on = guarded(policy, [_decision("t0", "sim-nano")], guard_state(SPEC, 1.0, 10_000),
                 steps=True)[0]
    capped_machine = machine_for(policy, machine, on)
    assert isinstance(capped_machine, Capped)
    assert capped_machine.step(view, []) == Call(("sim-nano",))
    # the lone cheap answer fails its checks: the machine escalates to the top, capped to t1
    assert machine.step(view, [_wrong("sim-nano")]) == Call(("sim-frontier",))
    assert capped_machine.step(view, [_wrong("sim-nano")]) == Call(("sim-mid",))
    # the cap tier has answered: its answer (the latest, no evidence either way) stands
    done = capped_machine.step(view, [_wrong("sim-nano"), Attempt("sim-mid", "4", "4")])
    assert isinstance(done, Accept) and (done.answer_from, done.answer) == ("sim-mid", "4")
    # uncapped decisions step the machine itself
    assert machine_for(policy, machine, _decision("t0", "sim-nano")) is machine


def test_a_capped_machine_never_calls_past_the_cap_in_a_replayed_stream() -> None:
    policy = _agreement_policy()
    machine = Agreement(("sim-nano", "sim-mid", "sim-frontier"), panel=2)
    on = guarded(policy, [_decision("t0", "sim-nano")], guard_state(SPEC, 1.0, 10_000),
                 steps=True)[0]
    capped_machine = machine_for(policy, machine, on)
    view = RequestView("Which letter?")
    answers = {"sim-nano": "A", "sim-mid": "B", "sim-frontier": "C"}
    paid: list[Attempt] = []
    for _ in range(8):
        action = capped_machine.step(view, paid)
        if isinstance(action, Accept):
            break
        assert "sim-frontier" not in action.models
        paid += [Attempt(m, f"the answer is ({answers[m]})", answers[m]) for m in action.models
                 if m not in {a.model for a in paid}]
    assert isinstance(action, Accept) and action.answer_from == "sim-mid"


def test_one_tier_leaves_a_step_machine_uncapped() -> None:
    data = demo_policy({"kind": "agreement"})
    data["tiers"] = {"t0": data["tiers"]["t0"]}
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    policy = policy_from_dict(data)
    [d] = guarded(policy, [_decision("t0", "sim-nano")], guard_state(SPEC, 1.0, 10_000),
                  steps=True)
    assert cap_of(d) is None and "one tier only" in d.reasons["guard"]["shift"]
