"""A key's limits, enforced before its request is accepted: requests per minute (429 with
``Retry-After``) and USD per UTC day and per 30 days (429 ``insufficient_quota`` once spent,
as OpenAI answers it).

Requests are counted in one-minute windows in a store every gateway process shares
(:mod:`tierline.workers.stores.request_counter`). Spending is read from the ledger (``charges``)
and cached
for ``Limits.spent_cache_s``, so a burst may overshoot a budget by what it costs in that time.
If the counter's store (Redis) fails, requests are served uncounted, and the log says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from tierline.gateway.auth import Identity
from tierline.gateway.errors import HttpError, log
from tierline.workers.stores.request_counter import RequestCounter

WINDOW_S = 60
DAY_S = 86_400
SPENT_CACHE_S = 5.0


class Quota:
    """Admits or refuses a caller's request by its key's limits."""

    def __init__(self, counter: RequestCounter, spent: Callable[[str, float], Decimal],
                 clock: Callable[[], float] = time.time,
                 cache_s: float = SPENT_CACHE_S) -> None:
        self.counter = counter
        self.cache_s = cache_s
        self.spent = spent  # (tenant, since_s) -> USD charged
        self.clock = clock
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, float], tuple[float, Decimal]] = {}

    def admit(self, identity: Identity) -> None:
        key = identity.key
        if key is None:
            return
        now = self.clock()
        if key.requests_per_minute is not None:
            window = int(now // WINDOW_S)
            try:
                count = self.counter.hit(key.id, window, WINDOW_S)
            except Exception:  # the counter's store is away: serve rather than refuse all
                log.warning("key %s: requests not counted (the counter's store failed)",
                            key.id, exc_info=True)
                count = 0
            if count > key.requests_per_minute:
                retry_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
                raise HttpError(429, f"key {key.id}: over its {key.requests_per_minute} "
                                f"requests per minute; retry in {retry_s} s",
                                "rate_limit_error", "rate_limited",
                                headers=[(b"retry-after", str(retry_s).encode())])
        day_start = now // DAY_S * DAY_S
        for budget, since, period in ((key.usd_per_day, day_start, "day"),
                                      (key.usd_per_month, day_start - 29 * DAY_S, "30 days")):
            if budget is not None and self._spent_since(key.tenant, since) >= budget:
                raise HttpError(429, f"tenant {key.tenant}: its budget of {budget:f} USD per "
                                f"{period} is spent", "insufficient_quota", "insufficient_quota")

    def _spent_since(self, tenant: str, since_s: float) -> Decimal:
        now = self.clock()
        with self._lock:
            cached = self._spent.get((tenant, since_s))
            if cached is not None and now - cached[0] < self.cache_s:
                return cached[1]
        total = self.spent(tenant, since_s)
        with self._lock:
            self._spent[(tenant, since_s)] = (now, total)
        return total
