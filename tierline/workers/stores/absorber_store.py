"""The absorber store interface: what a tier worker calls around every model call.

Two stores implement it with the same algorithm (``tierline.router.live.absorber``): the in-memory
store for the one-process embedded default and the Redis store for every worker on every
machine. A Celery tier worker does, per bundle::

    batch = store.reserve_many(scope_key(model), limits, estimates)
    ... call the provider for batch.granted; defer batch.deferred by batch.retry_after_s;
    ... fail batch.refused for good (BudgetExceeded with retry_after_s=None)
    store.settle_many([(reservation, tokens_in + tokens_out), ...])  # answered calls
    store.release_many([reservation, ...])                           # calls that failed
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Protocol

from tierline.router.live.absorber import BatchDecision, Limits, Reservation, Settlement

# A hold must outlive its call (tierline.workers.engine.execute caps one call at 300 s); a dead
# holder's tokens
# return after this. Pass a shorter ttl_s per call when the request's deadline is nearer.
DEFAULT_TTL_S = 330.0


class AbsorberStore(Protocol):
    """Global token budgets: reserve before a call, settle or release after."""

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
        ...

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
        ...

    def settle(
        self, reservation: Reservation, actual_tokens: int, *, now_s: float | None = None
    ) -> Settlement:
        """Swap a hold for the tokens the provider reported."""
        ...

    def settle_many(
        self, settled: Sequence[tuple[Reservation, int]], *, now_s: float | None = None
    ) -> list[Settlement]:
        """Settle a bundle's reservations in one round trip per scope."""
        ...

    def release(self, reservation: Reservation) -> bool:
        """Free the hold of a call that failed or was not made."""
        ...

    def release_many(self, reservations: Sequence[Reservation]) -> list[bool]:
        """Free several holds in one round trip per scope; True where the hold was live."""
        ...

    def usage(self, scope: str, limits: Limits, *, now_s: float | None = None) -> dict[str, float]:
        """Today's and this minute's counters of ``scope``, for reports."""
        ...


class _ProcessToken:
    """A random token per process, renewed in a forked child (Celery prefork forks workers)."""

    value = ""

    @classmethod
    def renew(cls) -> None:
        cls.value = f"{os.getpid():x}.{os.urandom(6).hex()}"


_ProcessToken.renew()
os.register_at_fork(after_in_child=_ProcessToken.renew)
_counter = itertools.count(1)  # next() on a count is atomic under the GIL


def reservation_ids(count: int) -> list[str]:
    """``count`` ids unique across threads, processes (forked or not) and machines."""
    return [f"{_ProcessToken.value}.{next(_counter):x}" for _ in range(count)]
