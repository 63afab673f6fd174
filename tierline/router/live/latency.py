"""How long a model takes to answer, learned from its recent calls, and whether a call can
still finish inside what is left of a request's latency budget.

A call's latency is modelled as a fixed part (queueing, time to the first token) plus a
part per output token, fitted by least squares over the model's calls with exponentially
decaying weights, so the estimate follows a provider that slows down or recovers. The fit
keeps five running sums per model (weight, tokens, seconds, tokens², tokens × seconds);
:func:`observe` is the update, shared by the memory store and the Redis script, which
applies the same arithmetic atomically for every worker on every host.

A call is expected to take ``fixed + per_token × min(max output tokens, typical output)``,
where the typical output is the decayed mean of the model's output tokens. Before that has
seen :data:`MIN_CALLS` calls, there is no estimate and nothing is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

HALF_LIFE_CALLS = 50  # a call's weight halves after this many newer calls of its model
DECAY = 0.5 ** (1 / HALF_LIFE_CALLS)
MIN_CALLS = 5  # calls seen before the estimate is used


@dataclass(frozen=True)
class LatencySums:
    """A model's decayed running sums over its calls; ``calls`` counts them undecayed."""

    calls: int = 0
    w: float = 0.0  # total weight
    sx: float = 0.0  # output tokens
    sy: float = 0.0  # seconds
    sxx: float = 0.0
    sxy: float = 0.0


@dataclass(frozen=True)
class Estimate:
    """A model's latency: ``fixed_s + per_token_s × tokens``; ``typical_tokens`` is its
    decayed mean output."""

    model: str
    calls: int
    fixed_s: float
    per_token_s: float
    typical_tokens: float

    def expected_s(self, max_output_tokens: int) -> float:
        """The expected duration of a call that may write up to ``max_output_tokens``."""
        return self.fixed_s + self.per_token_s * self._tokens(max_output_tokens)

    def _tokens(self, max_output_tokens: int) -> float:
        return min(float(max_output_tokens), self.typical_tokens)

    def miss(self, max_output_tokens: int, left_s: float) -> str | None:
        """Why a call cannot finish in ``left_s``, or None when it can be expected to."""
        tokens = self._tokens(max_output_tokens)
        expected = self.expected_s(max_output_tokens)
        if expected <= left_s:
            return None
        return (f"{self.model}: expected {expected:.2f} s ({self.fixed_s:.2f} s + "
                f"{tokens:.0f} tokens × {self.per_token_s * 1000:.1f} ms, over its last "
                f"{self.calls} calls), {max(left_s, 0.0):.2f} s of the latency budget left")


def observe(sums: LatencySums, tokens_out: int, latency_s: float,
            decay: float = DECAY) -> LatencySums:
    """The sums after one more call of ``tokens_out`` tokens that took ``latency_s``."""
    x, y = float(tokens_out), float(latency_s)
    return LatencySums(sums.calls + 1, decay * sums.w + 1.0, decay * sums.sx + x,
                       decay * sums.sy + y, decay * sums.sxx + x * x, decay * sums.sxy + x * y)


def estimate(model: str, sums: LatencySums, min_calls: int = MIN_CALLS) -> Estimate | None:
    """The fitted latency of ``model``, or None before ``min_calls`` calls.

    Neither part is negative: a fit with a negative slope (output length explains nothing)
    falls back to the mean duration, and one with a negative intercept to a line through
    the origin."""
    if sums.calls < min_calls or sums.w <= 0:
        return None
    mean_x, mean_y = sums.sx / sums.w, sums.sy / sums.w
    var_x = sums.sxx / sums.w - mean_x * mean_x
    cov = sums.sxy / sums.w - mean_x * mean_y
    slope = cov / var_x if var_x > 1e-9 * max(1.0, mean_x * mean_x) else 0.0
    fixed = mean_y - slope * mean_x
    if slope < 0:
        slope, fixed = 0.0, mean_y
    elif fixed < 0:
        fixed, slope = 0.0, (sums.sxy / sums.sxx if sums.sxx > 0 else 0.0)
    return Estimate(model, sums.calls, max(fixed, 0.0), max(slope, 0.0), mean_x)
