"""The Redis absorber store: one atomic Lua script per operation, shared by every worker.

Each scope owns three keys under one hash tag (``{prefix}:{<scope>}:holds|day|min``, see
``tierline/workers/stores/absorber.lua``) so a Redis Cluster would keep them on one slot. Redis
errors are
translated here, once, into :class:`~tierline.router.errors.Unavailable`. ``now_s`` comes from the
worker's clock (injectable), not Redis TIME, so the script and the pure core can be compared
under a scripted clock; worker clocks must be NTP-synced (skew shifts window edges only).
A script that fails half-way keeps its earlier writes (Redis does not roll scripts back); the
script has no failing step on valid input, and input is validated here before it is sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from tierline.router.errors import InvalidInput, Unavailable
from tierline.router.live import absorber
from tierline.router.live.absorber import BatchDecision, Limits, Reservation, Settlement
from tierline.workers.stores.absorber_store import DEFAULT_TTL_S, reservation_ids

LUA_SOURCE = (Path(__file__).parent / "absorber.lua").read_text(encoding="utf-8")
MAX_BATCH = 1_000  # Lua's unpack() overflows its C stack near 4,000 values


def _limit(value: int | None) -> str:
    return "" if value is None else str(value)


def _hold(res: Reservation) -> list[Any]:
    """What the script needs to find a hold: the parts of its member, and its minute bucket."""
    return [res.tokens, res.day, res.second, res.id]


def _by_scope(reservations: Sequence[Reservation]) -> dict[str, list[int]]:
    """Positions of ``reservations`` grouped by scope (each scope is its own set of keys)."""
    groups: dict[str, list[int]] = {}
    for position, res in enumerate(reservations):
        groups.setdefault(res.scope, []).append(position)
    return groups


class RedisAbsorberStore:
    """:class:`~tierline.workers.stores.absorber_store.AbsorberStore` whose state lives in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "tierline:absorber",
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._ttl_s = ttl_s
        self._script = client.register_script(LUA_SOURCE)  # EVALSHA, loads on NOSCRIPT
        self._keys: dict[str, list[str]] = {}

    def reserve(
        self,
        scope: str,
        limits: Limits,
        tokens: int,
        *,
        now_s: float | None = None,
        ttl_s: float | None = None,
    ) -> Reservation:
        """Hold ``tokens`` for one call or raise BudgetExceeded (retry_after_s None: never)."""
        batch = self.reserve_many(scope, limits, [tokens], now_s=now_s, ttl_s=ttl_s)
        if batch.granted:
            return batch.granted[0]
        reason = absorber.refusal_reason(limits, tokens) or batch.reason
        raise absorber.budget_error(scope, tokens, reason, batch.retry_after_s)

    def reserve_many(
        self,
        scope: str,
        limits: Limits,
        tokens: Sequence[int],
        *,
        now_s: float | None = None,
        ttl_s: float | None = None,
    ) -> BatchDecision:
        """Hold what fits of a bundle in one round trip; defer or refuse the rest."""
        now_s = self._clock() if now_s is None else float(now_s)
        expires_at_s = now_s + (self._ttl_s if ttl_s is None else float(ttl_s))
        if len(tokens) > MAX_BATCH:
            raise InvalidInput(f"tokens: at most {MAX_BATCH} reservations per call")
        counts = [absorber.check_tokens(t) for t in tokens]
        # permanent refusals need no Redis: they depend on the limits alone
        refused = [i for i, t in enumerate(counts) if absorber.refusal_reason(limits, t)]
        skip = set(refused)
        candidates = [i for i in range(len(counts)) if i not in skip]
        from tierline import metrics

        if not candidates:
            metrics.absorber_decision(scope, 0, 0, len(refused))
            return BatchDecision({}, [], refused, None, absorber.GRANTED)
        ids = reservation_ids(len(candidates))
        args: list[Any] = [
            "reserve",
            repr(now_s),
            repr(expires_at_s),
            _limit(limits.tokens_per_day),
            _limit(limits.tokens_per_minute),
            _limit(limits.requests_per_minute),
            absorber.day_of(now_s),
            math.floor(now_s),
        ]
        for rid, index in zip(ids, candidates, strict=True):
            args += [rid, counts[index]]
        reply = self._run(scope, args)
        reason, retry = reply[0].decode(), reply[1].decode()
        granted: dict[int, Reservation] = {}
        for position in reply[2:]:
            index = candidates[int(position) - 1]
            granted[index] = Reservation(
                ids[int(position) - 1], scope, counts[index], now_s, expires_at_s
            )
        deferred = [i for i in candidates if i not in granted]
        metrics.absorber_decision(scope, len(granted), len(deferred), len(refused))
        return BatchDecision(granted, deferred, refused, float(retry) if retry else None, reason)

    def settle(
        self, reservation: Reservation, actual_tokens: int, *, now_s: float | None = None
    ) -> Settlement:
        """Swap a hold for the tokens the provider reported."""
        return self.settle_many([(reservation, actual_tokens)], now_s=now_s)[0]

    def settle_many(
        self, settled: Sequence[tuple[Reservation, int]], *, now_s: float | None = None
    ) -> list[Settlement]:
        """Settle a bundle's reservations: one round trip per scope."""
        now_s = self._clock() if now_s is None else float(now_s)
        out: dict[int, Settlement] = {}
        for scope, positions in _by_scope([r for r, _ in settled]).items():
            args: list[Any] = ["settle", repr(now_s), absorber.day_of(now_s), math.floor(now_s)]
            for position in positions:
                res, actual_tokens = settled[position]
                args += [*_hold(res), absorber.check_tokens(actual_tokens)]
            reply = self._run(scope, args)
            for n, position in enumerate(positions):
                live, refunded, overrun = reply[3 * n : 3 * n + 3]
                out[position] = Settlement(bool(live), int(refunded), int(overrun))
        return [out[position] for position in range(len(settled))]

    def release(self, reservation: Reservation) -> bool:
        """Free the hold of a call that failed or was not made."""
        return self.release_many([reservation])[0]

    def release_many(self, reservations: Sequence[Reservation]) -> list[bool]:
        """Free several holds: one round trip per scope; True where the hold was live."""
        out: dict[int, bool] = {}
        for scope, positions in _by_scope(reservations).items():
            args: list[Any] = ["release", "0"]
            for position in positions:
                args += _hold(reservations[position])
            reply = self._run(scope, args)
            out.update(
                (position, bool(live)) for position, live in zip(positions, reply, strict=True)
            )
        return [out[position] for position in range(len(reservations))]

    def usage(self, scope: str, limits: Limits, *, now_s: float | None = None) -> dict[str, float]:
        """Today's and this minute's counters of ``scope``."""
        now_s = self._clock() if now_s is None else float(now_s)
        day = absorber.day_of(now_s)
        settled, held, overrun, in_flight, window_tokens, window_requests = (
            int(v) for v in self._run(scope, ["usage", repr(now_s), day, math.floor(now_s)])
        )
        room_tokens: float = math.inf
        if limits.tokens_per_day is not None:
            room_tokens = limits.tokens_per_day - settled - held
        if limits.tokens_per_minute is not None:
            room_tokens = min(room_tokens, limits.tokens_per_minute - window_tokens)
        room_requests: float = math.inf
        if limits.requests_per_minute is not None:
            room_requests = limits.requests_per_minute - window_requests
        return {
            "day": day,
            "settled_tokens": settled,
            "held_tokens": held,
            "overrun_tokens": overrun,
            "in_flight": in_flight,
            "window_tokens": window_tokens,
            "window_requests": window_requests,
            "remaining_tokens": room_tokens,
            "remaining_requests": room_requests,
        }

    def _run(self, scope: str, args: list[Any]) -> Any:
        """Run the script on ``scope``'s keys; Redis failures become Unavailable."""
        keys = self._keys.get(scope)
        if keys is None:
            base = f"{self._prefix}:{{{scope}}}"
            keys = self._keys[scope] = [f"{base}:holds", f"{base}:day", f"{base}:min"]
        try:
            return self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise Unavailable(f"absorber store unreachable: {exc}", model=scope) from exc
