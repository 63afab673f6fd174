"""Sliding 60-second request and token windows, as a provider enforces RPM and TPM."""

from __future__ import annotations

import math
from collections import deque

WINDOW_S = 60.0


class SlidingWindow:
    """Amounts admitted in the last 60 s; ``admit`` says how long to wait if over ``limit``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now_s: float) -> None:
        while self._events and self._events[0][0] <= now_s - WINDOW_S:
            self._total -= self._events.popleft()[1]

    def used(self, now_s: float) -> int:
        """Amount admitted in the window ending at ``now_s``."""
        self._expire(now_s)
        return self._total

    def wait_s(self, amount: int, now_s: float) -> float:
        """Seconds until ``amount`` fits under the limit (0 = now; inf = never)."""
        if self.limit is None:
            return 0.0
        if amount > self.limit:
            return math.inf
        excess = self.used(now_s) + amount - self.limit
        if excess <= 0:
            return 0.0
        freed = 0
        for at_s, n in self._events:
            freed += n
            if freed >= excess:
                return at_s + WINDOW_S - now_s
        return WINDOW_S  # unreachable: the whole window frees more than the excess

    def record(self, amount: int, now_s: float) -> None:
        """Count ``amount`` as admitted at ``now_s``."""
        if self.limit is not None:
            self._events.append((now_s, amount))
            self._total += amount


def retry_after_header(wait_s: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, at least 1, at most 60."""
    if math.isinf(wait_s):
        return int(WINDOW_S)
    return max(1, min(int(WINDOW_S), math.ceil(wait_s)))
