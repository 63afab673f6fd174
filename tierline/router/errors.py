"""The error tree. Every exception tierline raises on purpose is one of these.

    TierlineError
    ├── InvalidInput            bad user input; names the field, line or key   (never retried)
    │   ├── InvalidRequest      one request envelope failed validation
    │   └── PolicyError         a policy file failed to load or validate
    ├── ProviderError           a model call failed; translated once, at the provider boundary
    │   ├── RateLimited         429: retry after ``retry_after_s``
    │   ├── Unavailable         5xx, timeout, connection error: retry with backoff and jitter
    │   │   ├── MalformedResponse   non-JSON, wrong schema, a stream cut short
    │   │   └── CircuitOpen     not called: the model failed too often of late
    (tierline.router.live.breaker)
    │   ├── Rejected            other 4xx: the request itself is wrong (never retried)
    │   └── Taken               not called: another delivery of the request holds that attempt
    ├── BudgetExceeded          a token budget cannot take the call now (``retry_after_s``) or ever
    └── DeadlineExceeded        the latency budget cannot be met any more (fail fast)
        ├── TooSlow             a model's expected latency exceeds what is left (not called)
        └── CutOff              a call ran until the budget ran out (the model is that slow)

``retryable`` on each class says whether the same call may be tried again.
"""

from __future__ import annotations


class TierlineError(Exception):
    """Base of every error tierline raises on purpose."""

    retryable = False


class InvalidInput(TierlineError):
    """User input that tierline refuses; the message names what is wrong and where."""


class InvalidRequest(InvalidInput):
    """A request envelope that failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PolicyError(InvalidInput):
    """A policy that failed to load; the message names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class ProviderError(TierlineError):
    """A model call that failed; ``model`` names the model when known."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class RateLimited(ProviderError):
    """The provider (or our own absorber) said: not now, try after ``retry_after_s``."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, model: str | None = None
    ) -> None:
        super().__init__(message, model=model)
        self.retry_after_s = retry_after_s


class Unavailable(ProviderError):
    """The provider could not answer now (5xx, timeout, refused connection)."""

    retryable = True


class MalformedResponse(Unavailable):
    """The provider answered something that is not a valid response."""


class CircuitOpen(Unavailable):
    """The model was not called: its last calls all failed (tierline.router.live.breaker)."""

    retryable = False  # not until the breaker lets calls through again


class Rejected(ProviderError):
    """The provider refused the request itself (4xx other than 429); retrying cannot help."""


class Taken(ProviderError):
    """A call not made: its attempt was already written ahead by another delivery of the same
    request (a bundle sent twice, both running). That delivery pays for it and answers the
    request; this one records nothing for the call and leaves the request to it."""


class BudgetExceeded(TierlineError):
    """A token budget cannot take the call: ``retry_after_s`` is None when it never can."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.retry_after_s is not None


class DeadlineExceeded(TierlineError):
    """What is left of the latency budget is not enough for the next step."""


class CutOff(DeadlineExceeded):
    """A call cut off because its request's latency budget ran out: the request's doing, not a
    fault of the model's, though the model took at least that long
    (tierline.router.live.latency)."""


class TooSlow(DeadlineExceeded):
    """A model was not called: its expected latency (tierline.router.live.latency) exceeds what
    is left of
    the request's budget. A faster model of the request's chain may still answer in time."""
