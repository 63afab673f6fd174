"""Early stop on low per-token confidence: the rule as a table, and its policy settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierline.router.errors import PolicyError
from tierline.router.live.early_stop import EarlyStop
from tierline.router.policy import policy_from_dict

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"
RULE = EarlyStop(min_tokens=4, window=2, min_mean_logprob=-1.0)


def _stops_at(rule: EarlyStop, logprobs: list[float]) -> int | None:
    """The 1-based token at which the monitor says stop, or None."""
    monitor = rule.monitor()
    for n, logprob in enumerate(logprobs, 1):
        if monitor.feed(logprob):
            return n
    return None


@pytest.mark.parametrize(("logprobs", "stops_at"), [
    ([-3.0] * 10, 4),  # unsure from the start: stops as soon as min_tokens allows
    ([-0.1] * 10, None),  # sure throughout: runs to the end
    ([-0.1] * 5 + [-3.0] * 5, 6),  # loses confidence: stops when the window's mean drops
    ([-3.0, -3.0, -0.1, -0.1, -0.1], None),  # sure again by min_tokens: never stopped
    ([-0.5, -1.5, -0.5, -1.5], None),  # a mean of exactly the threshold is not below it
    ([-0.5, -1.5, -0.5, -1.75], 4),
    ([-3.0, -3.0, -3.0], None),  # shorter than min_tokens: never stopped
])
def test_a_generation_stops_once_its_recent_tokens_stay_unsure(
        logprobs: list[float], stops_at: int | None) -> None:
    assert _stops_at(RULE, logprobs) == stops_at


def test_a_window_longer_than_min_tokens_waits_for_the_window_to_fill() -> None:
    rule = EarlyStop(min_tokens=2, window=5, min_mean_logprob=-1.0)
    assert _stops_at(rule, [-3.0] * 8) == 5


def test_the_monitor_counts_every_token_it_was_fed() -> None:
    monitor = RULE.monitor()
    for logprob in [-0.1, -0.2, -0.3]:
        monitor.feed(logprob)
    assert monitor.tokens == 3


def _policy(early_stop: object) -> dict[str, object]:
    data = yaml.safe_load(DEMO.read_text())
    data["strategy"] = {"kind": "cascade", "early_stop": early_stop}
    return data


def test_early_stop_is_off_unless_the_policy_sets_it() -> None:
    data = yaml.safe_load(DEMO.read_text())
    assert policy_from_dict(data).strategy.early_stop is None
    spec = policy_from_dict(_policy({"min_tokens": 32, "window": 8, "min_mean_logprob": -1.5}))
    assert spec.strategy.early_stop is not None
    assert spec.strategy.early_stop.rule() == EarlyStop(32, 8, -1.5)


@pytest.mark.parametrize(("early_stop", "key", "reason"), [
    ({"min_tokens": 32, "window": 8, "min_mean_logprob": 0.5},
     "strategy.early_stop.min_mean_logprob", "must be a negative number"),
    ({"min_tokens": 32, "window": 8, "min_mean_logprob": float("-inf")},
     "strategy.early_stop.min_mean_logprob", "must be a negative number"),
    ({"min_tokens": 0, "window": 8, "min_mean_logprob": -1.5},
     "strategy.early_stop.min_tokens", "greater than 0"),
    ({"min_tokens": 32, "window": -1, "min_mean_logprob": -1.5},
     "strategy.early_stop.window", "greater than 0"),
    ({"min_tokens": 32, "window": 8}, "strategy.early_stop.min_mean_logprob", "required"),
    ({"min_tokens": 32, "window": 8, "min_mean_logprob": -1.5, "top": 5},
     "strategy.early_stop.top", "Extra inputs"),
])
def test_bad_early_stop_settings_name_the_file_key_and_reason(
        early_stop: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict(_policy(early_stop), "prod.yaml")
    message = str(caught.value)
    assert message.startswith(f"prod.yaml: {key}: ") and reason in message, message
