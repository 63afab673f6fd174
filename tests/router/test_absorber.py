"""Table tests for the absorber math: windows, settle, release, expiry, split, refusal."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tierline.router.errors import BudgetExceeded, InvalidInput
from tierline.router.live import absorber
from tierline.router.live.absorber import AbsorberState, Limits, Reservation, scope_key

DAY = 20_000 * 86_400  # 00:00 UTC of some day: 2024-10-04
NOON = DAY + 43_200.0
TTL_S = 100.0


def _reserve(state: AbsorberState, limits: Limits, tokens: int, now_s: float, rid: str = "r"):
    return absorber.reserve(state, limits, "m", tokens, now_s, TTL_S, rid)


@pytest.mark.parametrize(
    ("now_s", "day", "until_midnight_s"),
    [
        (DAY, 20_000, 86_400.0),
        (DAY - 0.25, 19_999, 0.25),
        (NOON, 20_000, 43_200.0),
        (DAY + 86_399.5, 20_000, 0.5),
        (0.0, 0, 86_400.0),
    ],
)
def test_days_are_utc_days_that_roll_at_midnight(now_s: float, day: int, until_midnight_s: float):
    assert absorber.day_of(now_s) == day
    assert absorber.seconds_until_midnight(now_s) == until_midnight_s


def test_a_full_day_refuses_until_utc_midnight_then_grants_again():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000)
    late = DAY + 86_399.5  # 23:59:59.5
    first = _reserve(state, limits, 1_000, late, "a")
    absorber.settle(state, first.reservation, 1_000, late)
    refused = _reserve(state, limits, 1, late + 0.25, "b")
    assert (refused.granted, refused.reason, refused.retry_after_s) == (False, "day_full", 0.25)
    assert _reserve(state, limits, 1_000, DAY + 86_400.0, "c").granted


def test_a_reservation_counts_against_the_day_it_was_made_in_even_when_settled_after_midnight():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000)
    held = _reserve(state, limits, 600, DAY - 1.0, "a").reservation
    absorber.settle(state, held, 500, DAY + 5.0)
    today = absorber.usage(state, limits, "m", DAY + 5.0)
    assert today["settled_tokens"] == 0
    assert state.scope("m").settled[absorber.day_of(DAY - 1.0)] == 500


@pytest.mark.parametrize(
    ("now_s", "granted", "retry_after_s"),
    [
        (NOON + 40.0, False, 21.0),  # bucket NOON+0 leaves the window at NOON+61
        (NOON + 60.9, False, 0.1),
        (NOON + 61.0, True, None),
    ],
)
def test_tokens_per_minute_is_a_sliding_window_of_one_second_buckets(
    now_s: float, granted: bool, retry_after_s: float | None
):
    state, limits = AbsorberState(), Limits(tokens_per_minute=100)
    _reserve(state, limits, 60, NOON + 0.5, "a")
    _reserve(state, limits, 40, NOON + 30.2, "b")
    decision = _reserve(state, limits, 50, now_s, "c")
    assert decision.granted is granted
    assert decision.retry_after_s == (None if granted else pytest.approx(retry_after_s))
    if not granted:
        assert decision.reason == "tokens_per_minute"


def test_requests_per_minute_counts_calls_not_tokens():
    state, limits = AbsorberState(), Limits(requests_per_minute=2)
    assert _reserve(state, limits, 1, NOON, "a").granted
    assert _reserve(state, limits, 1, NOON + 10.0, "b").granted
    third = _reserve(state, limits, 1, NOON + 20.0, "c")
    assert (third.granted, third.reason, third.retry_after_s) == (
        False,
        "requests_per_minute",
        41.0,
    )


@pytest.mark.parametrize(
    ("actual", "refunded", "overrun", "settled"),
    [(300, 700, 0, 300), (1_000, 0, 0, 1_000), (1_250, 0, 250, 1_250), (0, 1_000, 0, 0)],
)
def test_settle_refunds_the_difference_or_records_the_overrun(
    actual: int, refunded: int, overrun: int, settled: int
):
    state, limits = AbsorberState(), Limits(tokens_per_day=5_000, tokens_per_minute=2_000)
    held = _reserve(state, limits, 1_000, NOON, "a").reservation
    settlement = absorber.settle(state, held, actual, NOON + 2.0)
    assert (settlement.live, settlement.refunded_tokens, settlement.overrun_tokens) == (
        True,
        refunded,
        overrun,
    )
    use = absorber.usage(state, limits, "m", NOON + 2.0)
    assert (use["settled_tokens"], use["held_tokens"], use["overrun_tokens"]) == (
        settled,
        0,
        overrun,
    )
    assert use["window_tokens"] == actual  # the minute bucket is corrected too


def test_release_frees_the_tokens_but_keeps_the_request_counted():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000, requests_per_minute=5)
    held = _reserve(state, limits, 800, NOON, "a").reservation
    assert absorber.release(state, held) is True
    assert absorber.release(state, held) is False  # a second release changes nothing
    use = absorber.usage(state, limits, "m", NOON)
    assert (use["held_tokens"], use["window_tokens"], use["window_requests"]) == (0, 0, 1)
    assert _reserve(state, limits, 1_000, NOON, "b").granted


def test_a_dead_holders_reservation_stops_counting_at_its_expiry():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000)
    _reserve(state, limits, 700, NOON, "dead")
    waiting = _reserve(state, limits, 400, NOON + 30.0, "b")
    assert (waiting.reason, waiting.retry_after_s) == ("in_flight", TTL_S - 30.0)
    assert not _reserve(state, limits, 400, NOON + TTL_S - 0.001, "c").granted
    assert _reserve(state, limits, 400, NOON + TTL_S, "d").granted
    assert absorber.expire(state, "m", NOON + 2 * TTL_S) == ["d"]


def test_a_late_settle_after_expiry_still_counts_what_was_used():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000)
    held = _reserve(state, limits, 700, NOON, "slow").reservation
    settlement = absorber.settle(state, held, 650, NOON + TTL_S + 5.0)
    assert (settlement.live, settlement.refunded_tokens) == (False, 50)
    use = absorber.usage(state, limits, "m", NOON + TTL_S + 5.0)
    assert (use["settled_tokens"], use["held_tokens"]) == (650, 0)


@pytest.mark.parametrize(
    ("estimates", "remaining_tokens", "remaining_requests", "fit", "deferred"),
    [
        ([100, 200, 300], 1_000, math.inf, [0, 1, 2], []),
        ([100, 200, 300], 350, math.inf, [0, 1], [2]),
        ([500, 100, 300, 50], 420, math.inf, [1, 2], [0, 3]),  # 50 no longer fits after 400
        ([500, 100, 250, 50], 420, math.inf, [1, 2, 3], [0]),  # small ones fill the end
        ([10, 10, 10], 1_000, 2, [0, 1], [2]),
        ([], 100, math.inf, [], []),
        ([0, 5], 0, math.inf, [0], [1]),
    ],
)
def test_split_to_fit_takes_what_fits_in_order_and_defers_the_rest(
    estimates: list[int],
    remaining_tokens: float,
    remaining_requests: float,
    fit: list[int],
    deferred: list[int],
):
    assert absorber.split_to_fit(estimates, remaining_tokens, remaining_requests) == (fit, deferred)


def test_a_bundle_that_does_not_fit_is_split_and_the_rest_deferred_with_a_wait():
    state, limits = AbsorberState(), Limits(tokens_per_day=1_000)
    absorber.settle(state, _reserve(state, limits, 900, NOON, "a").reservation, 900, NOON)
    batch = absorber.reserve_many(
        state, limits, "m", [80, 2_000, 50, 30], ["b", "c", "d", "e"], NOON + 1.0, TTL_S
    )
    assert sorted(batch.granted) == [0]
    # 30 more would fit once the 80 just granted settles; at the latest when it expires
    assert (batch.deferred, batch.refused, batch.reason) == ([2, 3], [1], "in_flight")
    assert batch.retry_after_s == TTL_S
    absorber.settle(state, batch.granted[0], 80, NOON + 2.0)
    full = absorber.reserve_many(state, limits, "m", [30], ["f"], NOON + 3.0, TTL_S)
    assert (full.deferred, full.reason) == ([0], "day_full")
    assert full.retry_after_s == absorber.seconds_until_midnight(NOON + 3.0)


@pytest.mark.parametrize(
    ("limits", "tokens", "reason"),
    [
        (Limits(tokens_per_day=1_000), 1_001, "exceeds_daily_budget"),
        (Limits(tokens_per_day=5_000, tokens_per_minute=500), 501, "exceeds_minute_budget"),
    ],
)
def test_a_request_larger_than_a_whole_budget_is_refused_for_good(
    limits: Limits, tokens: int, reason: str
):
    state = AbsorberState()
    decision = _reserve(state, limits, tokens, NOON)
    assert (decision.granted, decision.reason, decision.retry_after_s) == (False, reason, None)
    assert absorber.time_until_capacity(state, limits, "m", tokens, NOON) is None
    error = absorber.budget_error("m", tokens, decision.reason, decision.retry_after_s)
    assert isinstance(error, BudgetExceeded) and error.retry_after_s is None
    assert not error.retryable


def test_time_until_capacity_is_zero_when_it_fits_and_the_binding_wait_otherwise():
    state, limits = AbsorberState(), Limits(tokens_per_day=900, tokens_per_minute=600)
    assert absorber.time_until_capacity(state, limits, "m", 500, NOON) == 0.0
    _reserve(state, limits, 500, NOON, "a")
    # the minute frees at NOON+61, the day's hold only at its expiry: the later one binds
    assert absorber.time_until_capacity(state, limits, "m", 500, NOON + 1.0) == TTL_S - 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tokens_per_day": -1},
        {"tokens_per_day": 0},
        {"tokens_per_minute": "100"},
        {"requests_per_minute": 1.5},
        {"tokens_per_day": True},
    ],
)
def test_limits_reject_negative_zero_and_non_integer_values(kwargs: dict[str, object]):
    with pytest.raises(InvalidInput, match=next(iter(kwargs))):
        Limits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("tokens", [-1, 1.5, "10", None])
def test_reserve_rejects_negative_or_non_integer_token_counts(tokens: object):
    with pytest.raises(InvalidInput, match="tokens"):
        _reserve(AbsorberState(), Limits(tokens_per_day=10), tokens, NOON)  # type: ignore[arg-type]


def test_a_scope_is_a_model_or_a_model_for_one_tenant():
    assert scope_key("gpt-4o-mini") == "gpt-4o-mini"
    assert scope_key("gpt-4o-mini", "acme") == "gpt-4o-mini|tenant=acme"
    with pytest.raises(InvalidInput):
        scope_key("bad{model}")


def test_scopes_do_not_share_budgets():
    state, limits = AbsorberState(), Limits(tokens_per_day=100)
    assert absorber.reserve(state, limits, scope_key("m", "a"), 100, NOON, TTL_S, "1").granted
    assert absorber.reserve(state, limits, scope_key("m", "b"), 100, NOON, TTL_S, "2").granted


def test_a_reservation_carries_its_day_and_minute_bucket():
    res = Reservation("x", "m", 10, NOON + 0.75, NOON + 100.75)
    assert (res.day, res.second) == (20_000, int(NOON))


def test_the_absorber_core_imports_no_io_library():
    code = (
        "import sys, tierline.router.live.absorber; "
        "bad = [m for m in ('redis', 'celery', 'httpx', 'sqlalchemy') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_in_flight_wait_walks_a_bounded_number_of_holds(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(absorber, "WALK_HOLDS", 2)
    state, limits = AbsorberState(), Limits(tokens_per_day=300)
    for n, at_s in enumerate((0.0, 10.0, 20.0)):
        absorber.reserve(state, limits, "m", 100, NOON + at_s, TTL_S, f"h{n}")
    # 300 more need all three holds gone (at +120); the walk stops at the second (+110)
    assert absorber.time_until_capacity(state, limits, "m", 300, NOON + 30.0) == 80.0
    monkeypatch.setattr(absorber, "WALK_HOLDS", 1_000)
    assert absorber.time_until_capacity(state, limits, "m", 300, NOON + 30.0) == 90.0
