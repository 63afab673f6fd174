"""Models' latency learned from their calls: the fit, its decay, and the fail-fast rule."""

from __future__ import annotations

import pytest

from tierline.router.live.latency import MIN_CALLS, LatencySums, estimate, observe


def _sums(calls: list[tuple[int, float]]) -> LatencySums:
    sums = LatencySums()
    for tokens, seconds in calls:
        sums = observe(sums, tokens, seconds)
    return sums


def test_the_fit_recovers_a_fixed_part_and_a_part_per_token() -> None:
    sums = _sums([(t, 0.3 + 0.005 * t) for t in (10, 200, 50, 400, 120, 30, 260)])
    e = estimate("m", sums)
    assert e is not None
    assert e.fixed_s == pytest.approx(0.3) and e.per_token_s == pytest.approx(0.005)
    assert e.calls == 7


def test_no_estimate_before_enough_calls() -> None:
    sums = _sums([(100, 1.0)] * (MIN_CALLS - 1))
    assert estimate("m", sums) is None
    assert estimate("m", observe(sums, 100, 1.0)) is not None


def test_the_estimate_follows_a_model_that_slows_down() -> None:
    sums = _sums([(100, 1.0)] * 300 + [(100, 4.0)] * 300)
    e = estimate("m", sums)
    assert e is not None and e.expected_s(1000) == pytest.approx(4.0, rel=0.02)


def test_a_call_is_expected_to_write_its_typical_output_at_most_its_cap() -> None:
    e = estimate("m", _sums([(t, 0.2 + 0.01 * t) for t in (100, 300, 200, 200, 300, 100)]))
    assert e is not None and e.typical_tokens == pytest.approx(200, rel=0.01)
    assert e.expected_s(4096) == pytest.approx(2.2, rel=0.01)
    assert e.expected_s(50) == pytest.approx(0.7, rel=0.01)


def test_a_call_that_cannot_finish_in_time_is_named_with_its_estimate() -> None:
    e = estimate("sim-mid", _sums([(t, 0.5 + 0.01 * t) for t in (100, 300, 200, 200, 300, 100)]))
    assert e is not None
    assert e.miss(4096, 3.0) is None
    why = e.miss(4096, 1.5)
    assert why is not None
    assert why.startswith("sim-mid: expected 2.50 s (0.50 s + 200 tokens × 10.0 ms")
    assert "1.50 s of the latency budget left" in why
    assert e.miss(20, 1.5) is None  # a short answer still fits


@pytest.mark.parametrize("calls", [
    [(100, 2.0), (200, 1.0), (300, 0.5), (150, 1.5), (250, 0.8)],  # longer answers faster
    [(100, 0.1), (200, 0.9), (300, 1.7), (150, 0.5), (250, 1.3)],  # the line crosses zero
    [(64, 0.7), (64, 0.9), (64, 0.8), (64, 0.7), (64, 0.9)],  # one output length only
])
def test_neither_part_is_ever_negative(calls: list[tuple[int, float]]) -> None:
    e = estimate("m", _sums(calls))
    assert e is not None and e.fixed_s >= 0 and e.per_token_s >= 0
    assert e.expected_s(512) > 0
