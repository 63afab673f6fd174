"""Retrying one call inside its deadline: exponential backoff with full jitter, at least the
server's ``Retry-After``, never a ``Rejected``; time, sleep and randomness are arguments."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tierline.router.errors import CutOff, DeadlineExceeded, ProviderError, RateLimited, Unavailable
from tierline.workers.providers.base import Completion, ModelCall, Provider

BASE_BACKOFF_S = 0.25
MAX_BACKOFF_S = 8.0
MAX_ATTEMPTS = 3  # a call's tries in all, the first included
MAX_TIMEOUT_S = 120.0  # one attempt never waits longer than this, even in the batch lane
DEADLINE_SLACK_S = 0.05  # a failure this close to the deadline is the deadline's doing
_default_rng = random.Random()


def backoff_s(attempt: int, error: ProviderError, rng: random.Random) -> float:
    """The wait before retry ``attempt`` (1-based): full jitter, at least ``retry_after_s``."""
    ceiling_s = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** (attempt - 1))
    wait_s = rng.uniform(0.0, ceiling_s)  # full jitter: spreads a herd of retries evenly
    if isinstance(error, RateLimited):
        wait_s = max(wait_s, error.retry_after_s)
    return wait_s


def call_with_retries(
    provider: Provider,
    call: ModelCall,
    *,
    deadline_at: float,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random = _default_rng,
    max_attempts: int = MAX_ATTEMPTS,
    max_wait_s: float = MAX_BACKOFF_S,
    max_timeout_s: float = MAX_TIMEOUT_S,
) -> Completion:
    """``provider.complete(call)``, retried while retryable and the deadline allows.

    Gives up with the last error when attempts run out, when the next wait would pass
    ``deadline_at``, or when a rate limit asks for longer than ``max_wait_s`` (the caller
    should defer that call, not hold a worker thread asleep: tierline.router.live.deferral
    decides whether
    its request waits or falls back). Raises DeadlineExceeded when no budget is left before
    an attempt, or when an attempt fails as the budget runs out (a timeout there is the
    request's, not the model's).
    """
    attempt = 0
    while True:
        remaining_s = deadline_at - now()
        if remaining_s <= 0:
            raise DeadlineExceeded(f"{call.model}: deadline passed before attempt {attempt + 1}")
        attempt += 1
        try:
            return _one_attempt(provider, call, min(remaining_s, max_timeout_s))
        except ProviderError as error:
            if isinstance(error, Unavailable) and now() >= deadline_at - DEADLINE_SLACK_S:
                # Cut off by the request's own budget, not a fault of the model's (the model
                # health registry counts Unavailable against the model; see
                # tierline.router.live.breaker).
                raise CutOff(f"{error} (the latency budget ran out)") from error
            if not error.retryable or attempt >= max_attempts:
                raise
            wait_s = backoff_s(attempt, error, rng)
            if wait_s > max_wait_s or now() + wait_s >= deadline_at:
                raise
            sleep(wait_s)


def _one_attempt(provider: Provider, call: ModelCall, timeout_s: float) -> Completion:
    """The whole answer; with a sink, streamed into it as it arrives."""
    if call.sink is None:
        return provider.complete(call, timeout_s=timeout_s)
    call.sink.begin()
    with provider.stream(call, timeout_s=timeout_s) as stream:
        for piece in stream:
            call.sink.text(piece)
    return stream.completion
