"""Defer or fail, as a table: rate limits wait while the deadline allows (realtime does not
wait for a provider's 429), outages wait as the breaker says, nothing else waits."""

from __future__ import annotations

import pytest

from tierline.router.errors import BudgetExceeded, RateLimited, Rejected, TooSlow, Unavailable
from tierline.router.live.breaker import OPEN_S
from tierline.router.live.deferral import defer_s, expired_reason, waits_at_once

NOW = 1_000_000.0
DAY = 86_400.0


@pytest.mark.parametrize(("failure", "lane", "deadline_in_s", "wait_s"), [
    (RateLimited("429", retry_after_s=30), "batch", DAY, 30.0),
    (RateLimited("429", retry_after_s=3600), "batch", DAY, 3600.0),
    (RateLimited("429", retry_after_s=0), "standard", DAY, 1.0),
    (RateLimited("429", retry_after_s=30), "batch", 20, None),  # the window opens too late
    (RateLimited("429", retry_after_s=2), "realtime", 10, None),  # realtime falls back
    (BudgetExceeded("full", retry_after_s=5), "realtime", 10, 5.0),  # a budget it can wait for
    (BudgetExceeded("full", retry_after_s=50), "realtime", 10, None),
    (BudgetExceeded("never"), "batch", DAY, None),
    (Unavailable("503"), "batch", DAY, OPEN_S),
    (Unavailable("503"), "batch", OPEN_S, None),
    (Rejected("400"), "batch", DAY, None),
    (TooSlow("slow"), "batch", DAY, None),
    (RateLimited("429", retry_after_s=30), "batch", -1, None),  # already past its deadline
])
def test_who_waits_and_for_how_long(failure: Exception, lane: str, deadline_in_s: float,
                                    wait_s: float | None) -> None:
    assert defer_s(failure, lane=lane, tries=1, deadline_at=NOW + deadline_in_s,
                   now_s=NOW) == wait_s


def test_a_rate_limit_sends_a_batch_request_to_wait_without_trying_cheaper_models() -> None:
    limited = RateLimited("429", retry_after_s=30)
    assert waits_at_once(limited, "batch") and waits_at_once(limited, "standard")
    assert not waits_at_once(limited, "realtime")
    assert not waits_at_once(Unavailable("503"), "batch")  # an outage tries the chain first


def test_an_expired_request_says_when_its_deadline_passed() -> None:
    assert expired_reason(0.0) == "Expired: deadline passed at 1970-01-01 00:00:00 UTC"
