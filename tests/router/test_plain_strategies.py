"""The strategies that need no bundle, as step machines (tierline.router.strategies.plain):
what each asks for next and which answer stands, given the answers by step. The driver that
makes their calls is tested through the tier worker (tests/workers/test_execute_*.py)."""

from __future__ import annotations

from typing import Any

from tests.workers.scripted import demo_policy
from tierline.router.learned.labels import build_prompt
from tierline.router.live.decide import Decision
from tierline.router.live.early_stop import EARLY_STOP
from tierline.router.policy import Policy, policy_from_dict
from tierline.router.strategies.plain import Climb, Panel, plain_machine, steps
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView

PROMPT = build_prompt("where is my money", ["refund", "card_lost", "transfer"])
VIEW = RequestView(PROMPT)


def _policy(strategy: dict[str, Any]) -> Policy:
    return policy_from_dict(demo_policy(strategy))


def _decided(policy: Policy, tier: str = "t0") -> Decision:
    return Decision("r", "low", 0.1, policy.strategy.kind, tier, policy.tiers[tier][0])


def _a(model: str, text: str, step: int, finish: str | None = None) -> Attempt:
    return Attempt(model, text, None, 0.0, step, finish)


def test_single_asks_the_decided_model_and_takes_its_answer() -> None:
    policy = _policy({"kind": "single"})
    machine = plain_machine(policy, _decided(policy, "t1"))
    assert machine.step(VIEW, []) == Call(("sim-mid",))
    assert machine.step(VIEW, [_a("sim-mid", "not sure", 0)]) == Accept("sim-mid", None, 1.0)


def test_a_cascade_climbs_on_a_weak_answer_and_stops_on_a_clean_label() -> None:
    policy = _policy({"kind": "cascade", "confidence_bar": 0.7})
    machine = plain_machine(policy, _decided(policy))
    assert isinstance(machine, Climb) and machine.route == ("sim-nano", "sim-mid",
                                                            "sim-frontier")
    weak = [_a("sim-nano", "Hmm, hard to say.", 0)]
    assert machine.step(VIEW, weak) == Call(("sim-mid",))
    accepted = machine.step(VIEW, [*weak, _a("sim-mid", "refund", 1)])
    assert isinstance(accepted, Accept) and accepted.answer_from == "sim-mid"


def test_an_answer_cut_short_climbs_and_a_whole_one_beats_it_at_the_top() -> None:
    policy = _policy({"kind": "cascade", "confidence_bar": 0.7})
    machine = plain_machine(policy, _decided(policy, "t1"))
    cut = [_a("sim-mid", "refund", 0, EARLY_STOP)]
    assert machine.step(VIEW, cut) == Call(("sim-frontier",))
    top = machine.step(VIEW, [*cut, _a("sim-frontier", "I could not say", 1)])
    assert isinstance(top, Accept) and top.answer_from == "sim-frontier"


def test_settling_takes_the_answer_judged_best_so_far() -> None:
    policy = _policy({"kind": "cascade", "confidence_bar": 0.99})
    machine = plain_machine(policy, _decided(policy))
    assert isinstance(machine, Climb)
    paid = [_a("sim-nano", "refund", 0), _a("sim-mid", "Hmm, hard to say.", 1)]
    settled = machine.settle(VIEW, paid)
    assert settled is not None and settled.answer_from == "sim-nano"
    assert machine.settle(VIEW, []) is None


def test_a_hybrid_asks_its_verifiers_at_the_critical_tier_and_takes_their_vote() -> None:
    policy = _policy({"kind": "hybrid", "confidence_bar": 0.7,
                      "options": {"critical_tier": "t1", "verify_with": ["sim-frontier"]}})
    machine = plain_machine(policy, _decided(policy))
    weak = [_a("sim-nano", "Hmm, hard to say.", 0)]
    assert machine.step(VIEW, weak) == Call(("sim-mid", "sim-frontier"))
    panel = [*weak, _a("sim-mid", "transfer", 1), _a("sim-frontier", "transfer", 1)]
    accepted = machine.step(VIEW, panel)
    assert isinstance(accepted, Accept) and accepted.detail is not None
    assert accepted.detail["strategy"] == "hybrid" and accepted.detail["verified_at"] == "t1"
    assert accepted.detail["votes"] == {"transfer": ["sim-frontier", "sim-mid"]}


def test_a_panel_asks_the_most_capable_first_and_votes() -> None:
    policy = _policy({"kind": "parallel"})
    machine = plain_machine(policy, _decided(policy))
    assert isinstance(machine, Panel)
    assert machine.step(VIEW, []) == Call(("sim-frontier", "sim-mid", "sim-nano"))
    voted = machine.step(VIEW, [_a("sim-frontier", "card_lost", 0), _a("sim-mid", "refund", 0),
                                _a("sim-nano", "Refund.", 0)])
    assert isinstance(voted, Accept) and voted.answer_from == "sim-mid" and voted.aggregate
    assert voted.detail is not None and voted.detail["decided_by"] == "majority"
    assert voted.detail["models"] == ["sim-nano", "sim-mid", "sim-frontier"]  # as listed


def test_a_cut_short_answer_votes_only_when_every_answer_was() -> None:
    policy = _policy({"kind": "parallel", "options": {"models": ["sim-nano", "sim-mid"]}})
    machine = plain_machine(policy, _decided(policy))
    voted = machine.step(VIEW, [_a("sim-mid", "transfer", 0, EARLY_STOP),
                                _a("sim-nano", "refund", 0)])
    assert isinstance(voted, Accept) and voted.answer_from == "sim-nano"


def test_answers_are_read_by_the_step_that_asked_for_them() -> None:
    grouped = steps([_a("m", "x", 2), _a("n", "y", 0), _a("o", "z", 2)])
    assert [[a.model for a in group] for group in grouped] == [["n"], ["m", "o"]]
