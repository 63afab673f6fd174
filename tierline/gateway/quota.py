"""A key's limits and its tenant's, enforced before its request is accepted: requests per
minute (429 with ``Retry-After``) and USD per UTC day and per 30 days (429
``insufficient_quota`` once spent, as OpenAI answers it).

A key's limits bound that key; a tenant's (``tierline keys limit``) bound all its keys
together, the keys file's included. Requests are counted in one-minute windows in a store
every gateway process shares (:mod:`tierline.workers.stores.request_counter`). Spending is
read from the ledger (``charges``) and, like the tenants' limits, cached for
``Limits.spent_cache_s``, so a burst may overshoot a budget by what it costs in that time
(and a new limit takes that long to apply). If the counter's store (Redis) fails, requests
are served uncounted, and the log says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from tierline.gateway.auth import Identity
from tierline.gateway.errors import HttpError, log
from tierline.record.api_keys import TenantLimits
from tierline.workers.stores.request_counter import RequestCounter

WINDOW_S = 60
DAY_S = 86_400
SPENT_CACHE_S = 5.0


class Quota:
    """Admits or refuses a caller's request by its key's and its tenant's limits."""

    def __init__(self, counter: RequestCounter, spent: Callable[[str, float], Decimal],
                 clock: Callable[[], float] = time.time,
                 cache_s: float = SPENT_CACHE_S,
                 tenant_limits: Callable[[], Mapping[str, TenantLimits]] = dict) -> None:
        self.counter = counter
        self.cache_s = cache_s
        self.spent = spent  # (tenant, since_s) -> USD charged
        self.tenant_limits = tenant_limits  # () -> every limited tenant's limits
        self.clock = clock
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, float], tuple[float, Decimal]] = {}
        self._tenants: tuple[float, Mapping[str, TenantLimits]] | None = None

    def limited(self, identity: Identity) -> bool:
        """Whether :meth:`admit` may refuse this caller, without reading anything: its key
        has limits, or its tenant had when last read (or that read is stale: admit reads)."""
        if identity.key is not None:
            return True
        if identity.tenant is None:
            return False
        tenants = self._tenants
        return (tenants is None or self.clock() - tenants[0] >= self.cache_s
                or identity.tenant in tenants[1])

    def admit(self, identity: Identity) -> None:
        now = self.clock()
        key = identity.key
        if key is not None:
            self._check(f"key {key.id}", key.id, key.requests_per_minute, key.tenant,
                        key.usd_per_day, key.usd_per_month, now)
        tenant = identity.tenant
        if tenant is not None and (limits := self._limits_of(tenant, now)) is not None:
            self._check(f"tenant {tenant}", f"tenant:{tenant}", limits.requests_per_minute,
                        tenant, limits.usd_per_day, limits.usd_per_month, now)

    def _check(self, who: str, counted_as: str, requests_per_minute: int | None, tenant: str,
               usd_per_day: Decimal | None, usd_per_month: Decimal | None, now: float) -> None:
        """429 for ``who`` over its requests per minute (counted as ``counted_as``) or with
        its tenant's budget spent."""
        if requests_per_minute is not None:
            window = int(now // WINDOW_S)
            try:
                count = self.counter.hit(counted_as, window, WINDOW_S)
            except Exception:  # the counter's store is away: serve rather than refuse all
                log.warning("%s: requests not counted (the counter's store failed)", who,
                            exc_info=True)
                count = 0
            if count > requests_per_minute:
                retry_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
                raise HttpError(429, f"{who}: over its {requests_per_minute} requests per "
                                f"minute; retry in {retry_s} s", "rate_limit_error",
                                "rate_limited", headers=[(b"retry-after", str(retry_s).encode())])
        day_start = now // DAY_S * DAY_S
        for budget, since, period in ((usd_per_day, day_start, "day"),
                                      (usd_per_month, day_start - 29 * DAY_S, "30 days")):
            if budget is not None and self._spent_since(tenant, since) >= budget:
                raise HttpError(429, f"tenant {tenant}: its budget of {budget:f} USD per "
                                f"{period} is spent", "insufficient_quota", "insufficient_quota")

    def _limits_of(self, tenant: str, now: float) -> TenantLimits | None:
        """The tenant's own limits, every tenant's read again once the last read is stale."""
        with self._lock:
            tenants = self._tenants
        if tenants is None or now - tenants[0] >= self.cache_s:
            tenants = (now, self.tenant_limits())
            with self._lock:
                self._tenants = tenants
        return tenants[1].get(tenant)

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
