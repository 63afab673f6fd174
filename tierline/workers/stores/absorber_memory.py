"""The in-memory absorber store: the pure algorithm behind a lock, for one process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tierline.router.live import absorber
from tierline.router.live.absorber import (
    AbsorberState,
    BatchDecision,
    Limits,
    Reservation,
    Settlement,
)
from tierline.workers.stores.absorber_store import DEFAULT_TTL_S, reservation_ids


class MemoryAbsorberStore:
    """Thread-safe :class:`~tierline.workers.stores.absorber_store.AbsorberStore`, in memory."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._state = AbsorberState()
        self._lock = threading.Lock()

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
        now_s = self._clock() if now_s is None else float(now_s)
        (rid,) = reservation_ids(1)
        with self._lock:
            decision = absorber.reserve(
                self._state, limits, scope, tokens, now_s, self._ttl(ttl_s), rid
            )
        if decision.reservation is None:
            raise absorber.budget_error(scope, tokens, decision.reason, decision.retry_after_s)
        return decision.reservation

    def reserve_many(
        self,
        scope: str,
        limits: Limits,
        tokens: Sequence[int],
        *,
        now_s: float | None = None,
        ttl_s: float | None = None,
    ) -> BatchDecision:
        """Hold what fits of a bundle; defer or refuse the rest."""
        now_s = self._clock() if now_s is None else float(now_s)
        ids = reservation_ids(len(tokens))
        with self._lock:
            return absorber.reserve_many(
                self._state, limits, scope, list(tokens), ids, now_s, self._ttl(ttl_s)
            )

    def settle(
        self, reservation: Reservation, actual_tokens: int, *, now_s: float | None = None
    ) -> Settlement:
        """Swap a hold for the tokens the provider reported."""
        now_s = self._clock() if now_s is None else float(now_s)
        with self._lock:
            return absorber.settle(self._state, reservation, actual_tokens, now_s)

    def settle_many(
        self, settled: Sequence[tuple[Reservation, int]], *, now_s: float | None = None
    ) -> list[Settlement]:
        """Settle a bundle's reservations at one instant."""
        now_s = self._clock() if now_s is None else float(now_s)
        with self._lock:
            return [absorber.settle(self._state, r, actual, now_s) for r, actual in settled]

    def release(self, reservation: Reservation) -> bool:
        """Free the hold of a call that failed or was not made."""
        with self._lock:
            return absorber.release(self._state, reservation)

    def release_many(self, reservations: Sequence[Reservation]) -> list[bool]:
        """Free several holds; True where the hold was live."""
        with self._lock:
            return [absorber.release(self._state, r) for r in reservations]

    def usage(self, scope: str, limits: Limits, *, now_s: float | None = None) -> dict[str, float]:
        """Today's and this minute's counters of ``scope``."""
        now_s = self._clock() if now_s is None else float(now_s)
        with self._lock:
            return absorber.usage(self._state, limits, scope, now_s)

    def _ttl(self, ttl_s: float | None) -> float:
        return self._ttl_s if ttl_s is None else float(ttl_s)
