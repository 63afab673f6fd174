"""A model that keeps failing is left alone for a while: a circuit breaker per model.

Only calls that end ``Unavailable`` after their retries count (5xx, timeouts, connection
errors, malformed answers): a 429 means the model is up but busy, a 4xx that the request
was wrong, and a call cut off by its request's own deadline ends ``CutOff`` (a DeadlineExceeded).
After :data:`FAILS_TO_OPEN` such calls in a row, with no answer in between, the model is
*open*: for :data:`OPEN_S` seconds nobody calls it, and its requests fall back at once
instead of each paying its retries and timeouts. After that, calls go through again; the
first answer closes the breaker, and a failure opens it again at once, since the count of
failures in a row only resets on an answer.

A request whose every model is unavailable does not fail while its budget leaves time to
wait: it comes back after :data:`OPEN_S`, until it has :data:`MAX_TRIES_DOWN` failed tries on
record (about ten minutes of outage for a one-model chain), so a nightly batch outlasts a
short outage and a broken endpoint still fails in minutes, not at the end of the batch window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tierline.router.errors import Unavailable

FAILS_TO_OPEN = 5
OPEN_S = 30.0
MAX_TRIES_DOWN = 20  # a request whose models are all down waits until it has this many tries


@dataclass(frozen=True)
class Breaker:
    """A model's failures in a row, and until when (epoch seconds) it is left alone."""

    fails: int = 0
    open_until: float = 0.0

    def answered(self) -> Breaker:
        return Breaker()

    def failed(self, now_s: float) -> Breaker:
        fails = self.fails + 1
        return Breaker(fails, now_s + OPEN_S if fails >= FAILS_TO_OPEN else self.open_until)

    def refusal(self, model: str, now_s: float) -> str | None:
        """Why ``model`` is not called now, or None when it may be."""
        if now_s >= self.open_until:
            return None
        until = time.strftime("%H:%M:%S", time.gmtime(self.open_until))
        return (f"{model}: {self.fails} calls in a row failed; not called until {until} UTC "
                f"({self.open_until - now_s:.0f} s)")


def retry_later_s(failure: object, tries: int, deadline_at: float, now_s: float
                  ) -> float | None:
    """How long a request whose every model ended with ``failure`` waits before it is tried
    again, after ``tries`` tries on record; None when it should fail now."""
    if (not isinstance(failure, Unavailable) or tries >= MAX_TRIES_DOWN
            or now_s + 2 * OPEN_S > deadline_at):
        return None
    return OPEN_S
