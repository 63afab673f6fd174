"""Token-budget absorber math: reserve before a model call, settle after, expire the dead.

Pure: no Redis, no clock, no I/O. Time is the argument ``now_s`` (UNIX seconds); state is a
plain object the caller owns (mutated in place). ``tierline/workers/stores/absorber.lua``
performs exactly
these steps inside Redis, and a test drives both side by side.

Windows
    tokens_per_day       the UTC day ``floor(now_s / 86400)``. UNIX time has no leap seconds,
                         so a day rolls at exactly 00:00:00 UTC. A reservation counts against
                         the day it was made in, even when it is settled after midnight.
    tokens_per_minute,   a sliding window of one-second buckets: a bucket counts while it is
    requests_per_minute  at most 60 whole seconds older than ``floor(now_s)``, so an event
                         counts for 60 to 61 s, never less than the provider's 60 s.

Accounting
    The day's use is ``settled + held`` (live reservations made that day); ``reserve`` grants
    while that stays within ``tokens_per_day``. ``settle`` swaps the hold for the tokens the
    provider reported (a refund when fewer, an overrun recorded when more); ``release`` drops
    the hold of a call that failed. A hold whose ``expires_at_s`` has passed (its holder died)
    stops counting against the day. The minute windows count the estimate at reserve time and
    are corrected by settle/release; a dead holder's tokens stay in them (its call may have
    been made) and age out. A request that can never fit (larger than a whole day or minute
    budget) is refused with ``retry_after_s=None``.

Guarantee and its limits
    Settled tokens never exceed ``tokens_per_day`` while every call uses at most what it
    reserved (reserve prompt + max output tokens) and settles before its hold expires. An
    underestimate settles as an overrun and may pass the limit by that overrun (nothing more
    is granted that day); a call outliving its hold may pass it by its own tokens, so the TTL
    must exceed the longest call. Settle each reservation once: a second settle cannot be told
    from a late one and counts again (the Postgres charge ledger is the idempotent record).
    A bundle is split first-fit: items that do not fit are skipped so later, smaller ones can
    fill the last of the budget, which can starve large items while small ones keep coming.

A limit scope is a string key: the model, or the model for one tenant (:func:`scope_key`).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

from tierline.router.errors import BudgetExceeded, InvalidInput
from tierline.router.live.absorber_types import (  # noqa: F401 - re-exported: the absorber's API
    DAY_S,
    GRANTED,
    PERMANENT,
    WALK_HOLDS,
    WINDOW_S,
    AbsorberState,
    BatchDecision,
    Decision,
    Limits,
    Reservation,
    ScopeState,
    Settlement,
    day_of,
    scope_key,
    seconds_until_midnight,
)

if TYPE_CHECKING:
    pass

def check_tokens(tokens: object) -> int:
    """``tokens`` as a count, or InvalidInput for negatives and non-integers."""
    if type(tokens) is not int or tokens < 0:
        raise InvalidInput(f"tokens: must be a non-negative integer, got {tokens!r}")
    return tokens


def refusal_reason(limits: Limits, tokens: int) -> str | None:
    """Why ``tokens`` can never fit in ``limits`` (a permanent refusal), or None."""
    if limits.tokens_per_day is not None and tokens > limits.tokens_per_day:
        return PERMANENT[0]
    if limits.tokens_per_minute is not None and tokens > limits.tokens_per_minute:
        return PERMANENT[1]
    return None


def budget_error(
    scope: str, tokens: int, reason: str, retry_after_s: float | None
) -> BudgetExceeded:
    """The error a store raises for a refused reserve."""
    when = "never fits" if retry_after_s is None else f"retry after {retry_after_s:.3f} s"
    return BudgetExceeded(
        f"{scope}: {tokens} tokens: {reason}, {when}", retry_after_s=retry_after_s
    )


def expire(state: AbsorberState, key: str, now_s: float) -> list[str]:
    """Bring ``key`` to ``now_s``: roll the day, drop dead holds, age minute buckets."""
    st = state.scope(key)
    _roll(st, day_of(now_s))
    dead: list[str] = []
    while st.expiries and st.expiries[0][0] <= now_s:
        res = st.holds.pop(heapq.heappop(st.expiries)[1], None)
        if res is not None:
            dead.append(res.id)
            _add_day(st, st.held, res.day, -res.tokens)
    _prune(st, math.floor(now_s))
    return dead


def remaining(state: AbsorberState, limits: Limits, key: str, now_s: float) -> tuple[float, float]:
    """Tokens and requests that fit now (math.inf when unlimited); call after expire."""
    st = state.scope(key)
    tokens = math.inf
    if limits.tokens_per_day is not None:
        day = day_of(now_s)
        used = st.settled.get(day, 0) + st.held.get(day, 0)
        tokens = limits.tokens_per_day - used
    if limits.tokens_per_minute is not None:
        tokens = min(tokens, limits.tokens_per_minute - st.window_tokens)
    requests = math.inf
    if limits.requests_per_minute is not None:
        requests = limits.requests_per_minute - st.window_requests
    return tokens, requests


def split_to_fit(
    estimates: list[int], remaining_tokens: float, remaining_requests: float = math.inf
) -> tuple[list[int], list[int]]:
    """First-fit in order: indices that fit the budget together, and the deferred rest."""
    fit: list[int] = []
    deferred: list[int] = []
    for index, tokens in enumerate(estimates):
        # skipping a big item lets later small ones fill the last of the budget
        if tokens <= remaining_tokens and remaining_requests >= 1:
            fit.append(index)
            remaining_tokens -= tokens
            remaining_requests -= 1
        else:
            deferred.append(index)
    return fit, deferred


def reserve_many(
    state: AbsorberState,
    limits: Limits,
    key: str,
    tokens: list[int],
    ids: list[str],
    now_s: float,
    ttl_s: float,
) -> BatchDecision:
    """Reserve what fits of a bundle now; defer the rest with the time until it could fit."""
    if len(ids) != len(tokens):
        raise InvalidInput(f"ids: {len(ids)} ids for {len(tokens)} token counts")
    refused = [i for i, t in enumerate(tokens) if refusal_reason(limits, check_tokens(t))]
    skip = set(refused)
    candidates = [i for i in range(len(tokens)) if i not in skip]
    expire(state, key, now_s)
    room_tokens, room_requests = remaining(state, limits, key, now_s)
    fit, rest = split_to_fit([tokens[i] for i in candidates], room_tokens, room_requests)
    st = state.scope(key)
    granted: dict[int, Reservation] = {}
    for j in fit:
        index = candidates[j]
        res = Reservation(ids[index], key, tokens[index], now_s, now_s + ttl_s)
        st.holds[res.id] = res
        heapq.heappush(st.expiries, (res.expires_at_s, res.id))
        _add_day(st, st.held, res.day, res.tokens)
        # a bucket below the oldest kept one only exists under clock skew; count it there
        bucket = max(res.second, st.oldest_s if st.oldest_s is not None else res.second)
        st.bucket_tokens[bucket] = st.bucket_tokens.get(bucket, 0) + res.tokens
        st.bucket_requests[bucket] = st.bucket_requests.get(bucket, 0) + 1
        st.window_tokens += res.tokens
        st.window_requests += 1
        granted[index] = res
    deferred = [candidates[j] for j in rest]
    if not deferred:
        return BatchDecision(granted, [], refused, None, GRANTED)
    smallest = min(tokens[i] for i in deferred)
    wait_s, reason = _wait(state, limits, key, smallest, now_s)
    return BatchDecision(granted, deferred, refused, wait_s, reason)


def reserve(
    state: AbsorberState,
    limits: Limits,
    key: str,
    tokens: int,
    now_s: float,
    ttl_s: float,
    reservation_id: str,
) -> Decision:
    """Reserve ``tokens`` for one call, or say when to retry (None: never)."""
    reason = refusal_reason(limits, check_tokens(tokens))
    if reason is not None:
        return Decision(False, None, None, reason)
    batch = reserve_many(state, limits, key, [tokens], [reservation_id], now_s, ttl_s)
    if batch.granted:
        return Decision(True, batch.granted[0], None, GRANTED)
    return Decision(False, None, batch.retry_after_s, batch.reason)


def settle(
    state: AbsorberState, reservation: Reservation, actual_tokens: int, now_s: float
) -> Settlement:
    """Replace a hold by the tokens the provider reported; record any overrun."""
    actual_tokens = check_tokens(actual_tokens)
    expire(state, reservation.scope, now_s)
    st = state.scope(reservation.scope)
    live = st.holds.pop(reservation.id, None) is not None
    delta = actual_tokens - reservation.tokens
    _add_day(st, st.settled, reservation.day, actual_tokens)
    if live:
        _add_day(st, st.held, reservation.day, -reservation.tokens)
    if delta > 0:
        _add_day(st, st.overrun, reservation.day, delta)
    _adjust_bucket(st, reservation.second, delta)
    return Settlement(live, max(0, -delta), max(0, delta))


def release(state: AbsorberState, reservation: Reservation) -> bool:
    """Free the hold of a call that was not made or failed; False if it was not live."""
    st = state.scope(reservation.scope)
    if st.holds.pop(reservation.id, None) is None:
        return False
    _add_day(st, st.held, reservation.day, -reservation.tokens)
    # the request itself stays counted: the provider may have seen it
    _adjust_bucket(st, reservation.second, -reservation.tokens)
    return True


def time_until_capacity(
    state: AbsorberState, limits: Limits, key: str, tokens: int, now_s: float
) -> float | None:
    """Seconds until ``tokens`` fit if no holder settles early (0 now, None never)."""
    if refusal_reason(limits, check_tokens(tokens)) is not None:
        return None
    expire(state, key, now_s)
    wait_s, _ = _wait(state, limits, key, tokens, now_s)
    return wait_s


def usage(state: AbsorberState, limits: Limits, key: str, now_s: float) -> dict[str, float]:
    """Today's and this minute's counters of ``key``, for reports."""
    expire(state, key, now_s)
    st = state.scope(key)
    day = day_of(now_s)
    room_tokens, room_requests = remaining(state, limits, key, now_s)
    return {
        "day": day,
        "settled_tokens": st.settled.get(day, 0),
        "held_tokens": st.held.get(day, 0),
        "overrun_tokens": st.overrun.get(day, 0),
        "in_flight": len(st.holds),
        "window_tokens": st.window_tokens,
        "window_requests": st.window_requests,
        "remaining_tokens": room_tokens,
        "remaining_requests": room_requests,
    }


# -- steps shared by the functions above (and mirrored by the Lua script) ----------------


def _wait(
    state: AbsorberState, limits: Limits, key: str, tokens: int, now_s: float
) -> tuple[float, str]:
    """Seconds until ``tokens`` fit and the first binding limit; state already expired."""
    st = state.scope(key)
    waits: list[tuple[float, str]] = []
    day = day_of(now_s)
    if limits.tokens_per_day is not None:
        settled = st.settled.get(day, 0)
        excess = settled + st.held.get(day, 0) + tokens - limits.tokens_per_day
        midnight_s = seconds_until_midnight(now_s)
        if settled + tokens > limits.tokens_per_day:
            waits.append((midnight_s, "day_full"))
        elif excess > 0:
            # an upper bound: holds usually settle (and refund) long before they expire.
            # Walking at most WALK_HOLDS bounds the work; stopping early only hints sooner.
            freed = 0
            wait_s = midnight_s
            first = heapq.nsmallest(WALK_HOLDS, st.holds.values(), key=lambda r: r.expires_at_s)
            for walked, res in enumerate(first, start=1):
                freed += res.tokens if res.day == day else 0
                if freed >= excess or walked == WALK_HOLDS:
                    wait_s = min(res.expires_at_s - now_s, midnight_s)
                    break
            waits.append((wait_s, "in_flight"))
    second = math.floor(now_s)
    for limit, used, buckets, need, name in (
        (limits.tokens_per_minute, st.window_tokens, st.bucket_tokens, tokens, "tokens_per_minute"),
        (
            limits.requests_per_minute,
            st.window_requests,
            st.bucket_requests,
            1,
            "requests_per_minute",
        ),
    ):
        if limit is not None and used + need > limit:
            waits.append((_minute_wait(st, buckets, used + need - limit, second, now_s), name))
    if not waits:
        return 0.0, GRANTED
    return max(w for w, _ in waits), waits[0][1]


def _minute_wait(
    st: ScopeState, buckets: dict[int, int], excess: int, second: int, now_s: float
) -> float:
    """Seconds until the oldest buckets holding ``excess`` leave the window."""
    freed = 0
    start = st.oldest_s if st.oldest_s is not None else second
    for s in range(start, second + 1):
        freed += buckets.get(s, 0)
        if freed >= excess:
            return s + WINDOW_S + 1 - now_s
    return float(WINDOW_S + 1)  # only reachable under clock skew (buckets ahead of now)


def _roll(st: ScopeState, day: int) -> None:
    """Keep today's and yesterday's day counters; drop older ones when the day rolls."""
    if st.day_now is None:
        st.day_now = day
    elif day > st.day_now:
        for old in (st.day_now - 1, st.day_now):
            if old < day - 1:
                for counters in (st.settled, st.held, st.overrun):
                    counters.pop(old, None)
        st.day_now = day


def _add_day(st: ScopeState, counters: dict[int, int], day: int, tokens: int) -> None:
    """Add to a day counter unless that day was already dropped."""
    if day >= (st.day_now or 0) - 1:
        counters[day] = counters.get(day, 0) + tokens


def _prune(st: ScopeState, second: int) -> None:
    """Drop minute buckets that left the window, keeping the running sums right."""
    low = second - WINDOW_S
    if st.oldest_s is None or st.oldest_s >= low:
        st.oldest_s = low if st.oldest_s is None else st.oldest_s
        return
    if low - st.oldest_s > WINDOW_S + 1:  # idle for over a minute: nothing is left
        st.bucket_tokens.clear()
        st.bucket_requests.clear()
        st.window_tokens = st.window_requests = 0
    else:
        for s in range(st.oldest_s, low):
            st.window_tokens -= st.bucket_tokens.pop(s, 0)
            st.window_requests -= st.bucket_requests.pop(s, 0)
    st.oldest_s = low


def _adjust_bucket(st: ScopeState, second: int, delta: int) -> None:
    """Correct a still-kept minute bucket by ``delta`` tokens, never below zero."""
    if second in st.bucket_tokens:
        new = max(0, st.bucket_tokens[second] + delta)
        st.window_tokens += new - st.bucket_tokens[second]
        st.bucket_tokens[second] = new
