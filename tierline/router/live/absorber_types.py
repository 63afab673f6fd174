"""The absorber's value types: limits, reservations, decisions, and the per-scope state that
the Redis keys of a scope mirror. The algorithm is in :mod:`tierline.router.live.absorber`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tierline.router.errors import InvalidInput

if TYPE_CHECKING:
    from tierline.router.policy import ModelLimits

DAY_S = 86_400
WINDOW_S = 60  # a minute bucket counts while it is at most this many seconds behind now
WALK_HOLDS = 1_000  # holds examined, soonest expiry first, to estimate an in-flight wait

GRANTED = "granted"
PERMANENT = ("exceeds_daily_budget", "exceeds_minute_budget")


@dataclass(frozen=True)
class Limits:
    """Capacity of one scope; None means unlimited."""

    tokens_per_day: int | None = None
    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in ("tokens_per_day", "tokens_per_minute", "requests_per_minute"):
            value = getattr(self, name)
            # bool is an int subclass; True tokens/day is a bug, not a limit
            if value is not None and (type(value) is not int or value <= 0):
                raise InvalidInput(f"limits.{name}: must be a positive integer, got {value!r}")

    @classmethod
    def from_model_limits(cls, limits: ModelLimits) -> Limits:
        """The absorber's view of a policy model's ``limits``."""
        return cls(limits.tokens_per_day, limits.tokens_per_minute, limits.requests_per_minute)


@dataclass(frozen=True)
class Reservation:
    """Tokens held for one call; carries everything settle and release need."""

    id: str
    scope: str
    tokens: int
    reserved_at_s: float
    expires_at_s: float

    @property
    def day(self) -> int:
        """The UTC day index the reservation counts against."""
        return day_of(self.reserved_at_s)

    @property
    def second(self) -> int:
        """The minute-window bucket the reservation was counted in."""
        return math.floor(self.reserved_at_s)


@dataclass(frozen=True)
class Decision:
    """Outcome of one reserve: a reservation, or when to retry (None: never)."""

    granted: bool
    reservation: Reservation | None
    retry_after_s: float | None
    reason: str


@dataclass(frozen=True)
class BatchDecision:
    """Outcome of reserving a bundle: granted by input index, deferred, refused for good."""

    granted: dict[int, Reservation]
    deferred: list[int]
    refused: list[int]
    retry_after_s: float | None  # when the smallest deferred item could fit
    reason: str  # why the deferred were deferred (GRANTED when none were)


@dataclass(frozen=True)
class Settlement:
    """Outcome of a settle; ``live`` is False when the hold had already expired."""

    live: bool
    refunded_tokens: int
    overrun_tokens: int


@dataclass
class ScopeState:
    """Counters of one scope: what the Redis keys of that scope hold."""

    day_now: int | None = None
    settled: dict[int, int] = field(default_factory=dict)  # day -> tokens
    held: dict[int, int] = field(default_factory=dict)  # day -> tokens of live holds
    overrun: dict[int, int] = field(default_factory=dict)  # day -> tokens beyond holds
    holds: dict[str, Reservation] = field(default_factory=dict)
    # (expires_at_s, id) of every hold; settled ones are skipped when they surface
    expiries: list[tuple[float, str]] = field(default_factory=list)
    oldest_s: int | None = None  # the oldest minute bucket still kept
    bucket_tokens: dict[int, int] = field(default_factory=dict)
    bucket_requests: dict[int, int] = field(default_factory=dict)
    window_tokens: int = 0
    window_requests: int = 0


@dataclass
class AbsorberState:
    """All scopes' counters, by scope key."""

    scopes: dict[str, ScopeState] = field(default_factory=dict)

    def scope(self, key: str) -> ScopeState:
        """The state of ``key``, created empty on first use."""
        return self.scopes.setdefault(key, ScopeState())


def scope_key(model: str, tenant: str | None = None) -> str:
    """The key a limit applies to: a model, or a model for one tenant."""
    for part in (model, tenant):
        # braces would break the Redis hash tag the store wraps the key in
        if part is not None and (not part or "{" in part or "}" in part):
            raise InvalidInput(f"scope: {part!r} must be non-empty and contain no braces")
    return model if tenant is None else f"{model}|tenant={tenant}"


def day_of(now_s: float) -> int:
    """Index of the UTC day containing ``now_s``."""
    return math.floor(now_s / DAY_S)


def seconds_until_midnight(now_s: float) -> float:
    """Seconds until the next 00:00 UTC, when the day budget resets."""
    return (day_of(now_s) + 1) * DAY_S - now_s
