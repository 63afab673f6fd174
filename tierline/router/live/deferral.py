"""Defer or fail: the one decision every strategy path takes when a call cannot be made now.

A rate limit (a provider's 429, or a token budget with no room until its window opens) and
an outage of every model a request may use are waits, not verdicts. Whether a request
waits is decided here, for the cascade, panel and learned paths alike:

- a rate limit (:class:`RateLimited`, or :class:`BudgetExceeded` with a ``retry_after_s``)
  waits until the window opens, as long as the request's deadline is still ahead then; a
  realtime request does not wait for a provider's 429: it falls back to an equal-or-cheaper
  model, or fails at once with the reason;
- every model down (:class:`Unavailable`) waits as
:func:`tierline.router.live.breaker.retry_later_s` says;
- anything else does not wait.

A request past its deadline is *expired*, whatever ended its last call: its error says when
the deadline passed (:func:`expired_reason`), not which step could not be taken.

Time is an argument (``now_s``).
"""

from __future__ import annotations

import time

from tierline.router.errors import BudgetExceeded, RateLimited
from tierline.router.live.breaker import retry_later_s

REALTIME = "realtime"
MIN_WAIT_S = 1.0  # a rate limit that names no wait, or zero, is tried again after this
EXPIRED = "Expired"  # the error class an expired request's reason starts with


def rate_limit_wait_s(failure: object) -> float | None:
    """How long the window of a rate limit stays shut, or None when ``failure`` is not one."""
    if isinstance(failure, RateLimited):
        return max(failure.retry_after_s, MIN_WAIT_S)
    if isinstance(failure, BudgetExceeded) and failure.retry_after_s is not None:
        return max(failure.retry_after_s, MIN_WAIT_S)
    return None


def waits_at_once(failure: object, lane: str) -> bool:
    """Whether this failure sends the request to wait without trying the rest of its chain:
    a rate limit outside the realtime lane (the chain's other models are the same price or
    cheaper, and the request may rather wait for the one it was routed to)."""
    return lane != REALTIME and rate_limit_wait_s(failure) is not None


def defer_s(failure: object, *, lane: str, tries: int, deadline_at: float, now_s: float
            ) -> float | None:
    """How long the request waits before it is tried again, or None: it does not wait (it
    falls back along its chain, keeps the best answer it paid for, or fails).

    ``tries``: the request's calls on record, for the cap on waiting out an outage."""
    if now_s >= deadline_at:
        return None
    wait_s = rate_limit_wait_s(failure)
    if wait_s is not None:
        if isinstance(failure, RateLimited) and lane == REALTIME:
            return None
        return wait_s if now_s + wait_s < deadline_at else None
    return retry_later_s(failure, tries, deadline_at, now_s)


def expired(deadline_at: float, now_s: float) -> bool:
    """Whether the request's deadline has passed."""
    return now_s >= deadline_at


def expired_reason(deadline_at: float) -> str:
    """The error of a request that ran out of time: when its deadline passed, in UTC."""
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(deadline_at))
    return f"{EXPIRED}: deadline passed at {at} UTC"
