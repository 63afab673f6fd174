"""When a request whose every model failed waits and tries again, and when it fails."""

from __future__ import annotations

from tierline.router.errors import (
    CircuitOpen,
    DeadlineExceeded,
    MalformedResponse,
    RateLimited,
    Rejected,
    Unavailable,
)
from tierline.router.live.breaker import MAX_TRIES_DOWN, OPEN_S, retry_later_s

NOW = 1_000_000.0
NIGHT = NOW + 8 * 3600


def test_a_request_with_time_waits_out_an_unavailable_model() -> None:
    for failure in (Unavailable("503"), CircuitOpen("left alone"), MalformedResponse("junk")):
        assert retry_later_s(failure, 1, NIGHT, NOW) == OPEN_S


def test_other_failures_fail_now() -> None:
    limited = RateLimited("429", retry_after_s=1.0)
    for failure in (Rejected("400"), DeadlineExceeded("late"), limited, None):
        assert retry_later_s(failure, 1, NIGHT, NOW) is None


def test_no_wait_without_time_to_wait_and_then_answer() -> None:
    assert retry_later_s(Unavailable("503"), 1, NOW + 2 * OPEN_S, NOW) == OPEN_S
    assert retry_later_s(Unavailable("503"), 1, NOW + 2 * OPEN_S - 1, NOW) is None


def test_a_request_stops_waiting_after_its_tries() -> None:
    assert retry_later_s(Unavailable("503"), MAX_TRIES_DOWN - 1, NIGHT, NOW) == OPEN_S
    assert retry_later_s(Unavailable("503"), MAX_TRIES_DOWN, NIGHT, NOW) is None
