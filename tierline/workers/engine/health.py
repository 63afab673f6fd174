"""The model health registry: how long each model's calls take (tierline.router.live.latency)
and whether it
keeps failing (tierline.router.live.breaker). It lives in Redis, so that every worker on every
host learns
from every call and leaves the same models alone, or in this process's memory on the
embedded stack. One hash per model; one script call records a whole round of calls, folded
to one update per model.

The registry only advises: when Redis cannot be reached, calls are made without it and go
unrecorded, with a warning; no call or task fails for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tierline.router.live.breaker import FAILS_TO_OPEN, OPEN_S, Breaker
from tierline.router.live.latency import DECAY, LatencySums, observe

log = logging.getLogger(__name__)

KEEP_S = 7 * 86400  # a model unused this long starts afresh
FIELDS = ("calls", "w", "sx", "sy", "sxx", "sxy", "fails", "open_until")


ANSWERED, CUT_OFF, FAILED = "a", "c", "f"


@dataclass(frozen=True)
class Seen:
    """One call's end as the registry counts it: an answer (its output tokens and seconds);
    a call cut off by its request's deadline (the model is slow, not failing: ``tokens`` is
    what it could have written, ``seconds`` what it is counted as having taken, see
    tierline.workers.engine.calls); or a failure that counts against the model (``Unavailable``)."""

    model: str
    kind: str  # ANSWERED, CUT_OFF or FAILED
    tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class ModelHealth:
    latency: LatencySums = LatencySums()
    breaker: Breaker = Breaker()


class HealthStore(Protocol):
    """Models' health, shared by whoever calls them."""

    def record(self, seen: Sequence[Seen], now_s: float) -> None: ...

    def read(self, models: Iterable[str]) -> dict[str, ModelHealth]: ...


def after(health: ModelHealth, seen: Seen, now_s: float) -> ModelHealth:
    """A model's health after one more call ended."""
    if seen.kind == FAILED:
        return replace(health, breaker=health.breaker.failed(now_s))
    latency = observe(health.latency, seen.tokens, seen.seconds)
    breaker = health.breaker.answered() if seen.kind == ANSWERED else health.breaker
    return ModelHealth(latency, breaker)


class MemoryHealthStore:
    """This process's calls only: the embedded stack."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: dict[str, ModelHealth] = {}

    def record(self, seen: Sequence[Seen], now_s: float) -> None:
        with self._lock:
            for s in seen:
                self._health[s.model] = after(self._health.get(s.model, ModelHealth()), s, now_s)

    def read(self, models: Iterable[str]) -> dict[str, ModelHealth]:
        with self._lock:
            return {m: self._health[m] for m in models if m in self._health}


@dataclass
class _Round:
    """One model's calls of a round, folded: the decayed sums they add (the newest weighing
    1), and what they leave of its failures in a row."""

    n: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0] * 5)  # w, sx, sy, sxx, sxy
    reset: bool = False  # an answer came: the count starts again after it
    fails: int = 0  # failures in a row at the end (after the last answer, if any)


def fold(seen: Sequence[Seen]) -> dict[str, _Round]:
    """The round's calls by model, so the registry takes one update per model: applying
    a fold equals applying its calls one by one with :func:`after`."""
    out: dict[str, _Round] = {}
    for s in seen:
        r = out.setdefault(s.model, _Round())
        if s.kind == FAILED:
            r.fails += 1
            continue
        x, y = float(s.tokens), float(s.seconds)
        r.n += 1
        r.sums = [DECAY * v + o for v, o in zip(r.sums, (1.0, x, y, x * x, x * y), strict=True)]
        if s.kind == ANSWERED:
            r.reset, r.fails = True, 0
    return out


# Sums decay by decay^n and take the round's; failures in a row restart after an answer.
_RECORD = """
local keep, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local need, open_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local fields = {'w', 'sx', 'sy', 'sxx', 'sxy'}
for i, key in ipairs(KEYS) do
  local a = 4 + 9 * (i - 1)
  local n, scale = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local reset, fails = ARGV[a + 8] == '1', tonumber(ARGV[a + 9])
  if n > 0 then
    local s = redis.call('HMGET', key, 'calls', 'w', 'sx', 'sy', 'sxx', 'sxy')
    redis.call('HSET', key, 'calls', string.format('%d', (tonumber(s[1]) or 0) + n))
    for j, name in ipairs(fields) do
      local v = scale * (tonumber(s[j + 1]) or 0) + tonumber(ARGV[a + 2 + j])
      redis.call('HSET', key, name, string.format('%.17g', v))
    end
  end
  if reset then
    redis.call('HSET', key, 'fails', fails, 'open_until', 0)
  elseif fails > 0 then
    fails = redis.call('HINCRBY', key, 'fails', fails)
  end
  if fails >= need then
    redis.call('HSET', key, 'open_until', string.format('%.17g', now + open_s))
  end
  redis.call('EXPIRE', key, keep)
end
return #KEYS
"""


class RedisHealthStore:
    """Every worker's calls, in one Redis hash per model."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._record = client.register_script(_RECORD)

    @staticmethod
    def key(model: str) -> str:
        return f"tierline:health:{model}"

    def record(self, seen: Sequence[Seen], now_s: float) -> None:
        if not seen:
            return
        rounds = fold(seen)
        args: list[Any] = [KEEP_S, repr(now_s), FAILS_TO_OPEN, repr(OPEN_S)]
        for r in rounds.values():
            args += [r.n, repr(DECAY ** r.n), *map(repr, r.sums), int(r.reset), r.fails]
        try:
            self._record(keys=[self.key(m) for m in rounds], args=args)
        except Exception:
            log.warning("cannot record %d calls in the model health registry", len(seen),
                        exc_info=True)

    def read(self, models: Iterable[str]) -> dict[str, ModelHealth]:
        names = list(models)
        try:
            pipe = self._client.pipeline(transaction=False)
            for model in names:
                pipe.hmget(self.key(model), *FIELDS)
            rows = pipe.execute()
        except Exception:
            log.warning("cannot read the model health registry; calls go ahead without it",
                        exc_info=True)
            return {}
        out = {}
        for model, row in zip(names, rows, strict=True):
            if any(v is not None for v in row):
                calls, w, sx, sy, sxx, sxy, fails, open_until = (v or 0 for v in row)
                out[model] = ModelHealth(
                    LatencySums(int(calls), float(w), float(sx), float(sy), float(sxx),
                                float(sxy)),
                    Breaker(int(fails), float(open_until)))
        return out
