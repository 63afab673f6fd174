"""The cost guard's window: what the calls started in the last ``window_s`` cost, read from
the record.

Every paid call is an attempt row with its USD and tokens, written by whichever worker made
it, so the record already is the one shared window; no second write path is needed. Each
router process reads it at most once per ``refresh_s`` (the guard acts on a 30 s window,
so a second's staleness does not matter) through an index on ``attempts.started_at``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from tierline.record.schema import attempts


@dataclass
class SpendWindow:
    """USD and tokens of the calls started in the window, cached for ``refresh_s``."""

    engine: Engine
    refresh_s: float = 1.0
    _cached: tuple[float, float, float, int] | None = None  # (read at, window_s, usd, tokens)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def totals(self, now_s: float, window_s: float) -> tuple[float, int]:
        """(USD, tokens) of the paid calls started in ``[now_s - window_s, now_s]``."""
        with self._lock:
            hit = self._cached
            if hit is not None and hit[1] == window_s and 0 <= now_s - hit[0] < self.refresh_s:
                return hit[2], hit[3]
        query = select(func.coalesce(func.sum(attempts.c.usd), 0),
                       func.coalesce(func.sum(attempts.c.tokens_in + attempts.c.tokens_out), 0)
                       ).where(attempts.c.started_at >= now_s - window_s, attempts.c.ok,
                               # shadow calls have their own budget
                               # (tierline.workers.engine.shadow): the
                               # guard steers what routing spends, not what grading it costs
                               attempts.c.shadow.is_(False))
        with self.engine.connect() as conn:
            usd, tokens = conn.execute(query).one()
        with self._lock:
            self._cached = (now_s, window_s, float(usd), int(tokens))
        return float(usd), int(tokens)
