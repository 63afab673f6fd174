"""Early stop on low confidence: cut a long generation short while the model's own
per-token log-probabilities stay low, rather than pay for all of a likely wrong answer.

The rule (policy ``strategy.early_stop``) says stop once at least ``min_tokens`` tokens
have been generated and the mean log-probability of the last ``window`` tokens is below
``min_mean_logprob``. A provider that streams logprobs feeds a :class:`StopMonitor` one
token at a time; a stopped answer ends with the finish reason :data:`EARLY_STOP`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

EARLY_STOP = "early_stop"  # the finish reason of an answer this rule cut short


@dataclass(frozen=True)
class EarlyStop:
    """When to give up on a generation: enough tokens, and the recent ones all unsure."""

    min_tokens: int  # never stop before this many tokens
    window: int  # how many of the latest tokens the mean is taken over
    min_mean_logprob: float  # stop while their mean log-probability is below this (< 0)

    def monitor(self) -> StopMonitor:
        """A fresh monitor for one generation."""
        return StopMonitor(self)


@dataclass
class StopMonitor:
    """Follows one generation token by token; ``feed`` says when to stop it."""

    rule: EarlyStop
    tokens: int = 0  # tokens seen so far
    _recent: deque[float] = field(default_factory=deque)

    def feed(self, logprob: float) -> bool:
        """Count one more token with its log-probability; True once the rule says stop."""
        self.tokens += 1
        self._recent.append(logprob)
        if len(self._recent) > self.rule.window:
            self._recent.popleft()
        if self.tokens < self.rule.min_tokens or len(self._recent) < self.rule.window:
            return False
        return sum(self._recent) / self.rule.window < self.rule.min_mean_logprob
