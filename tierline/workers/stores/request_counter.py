"""Counting requests per key in fixed windows, shared by every gateway process: Redis on the
distributed stack, memory on the embedded one (one process)."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class RequestCounter(Protocol):
    def hit(self, name: str, window: int, window_s: int) -> int:
        """Count one more request for ``name`` in window number ``window``; the count."""
        ...


class MemoryCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, name: str, window: int, window_s: int) -> int:
        with self._lock:
            if len(self._counts) > 100_000:  # old windows: drop them all, they are past
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            count = self._counts.get((name, window), 0) + 1
            self._counts[(name, window)] = count
            return count


class RedisCounter:
    def __init__(self, client: Any) -> None:
        self.client = client

    def hit(self, name: str, window: int, window_s: int) -> int:
        key = f"tierline:requests:{name}:{window}"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s * 2)
            count, _ = pipe.execute()
        return int(count)
