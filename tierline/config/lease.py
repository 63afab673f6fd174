"""How long a task may hold its message: the broker's visibility timeout, and the shares of
it that calls, rounds, writes and countdowns may take (``Settings.lease``; the timeout is
``TIERLINE_VISIBILITY_TIMEOUT_S``, 60 s unless set).

On Redis, a message a worker took and has not acknowledged is handed to another worker
once the visibility timeout has passed, whether its worker died or is merely slow. So
the timeout is how soon a killed worker's work comes back, and also the longest a task may
run without being delivered twice. Every part of a task is sized to fit inside it:

- a model call is cut off after ``call_s`` (half the timeout);
- a bundle starts no new round of calls after ``rounds_s``: the requests still climbing are
  deferred with the answers they paid for, and come back at once in a new message;
- the write of a bundle's outcome is retried for up to ``write_s`` before the task gives up
  (and is retried itself, see tierline.workers.tasks);
- a countdown (an ETA message, which the worker also holds unacknowledged while it waits)
  is at most ``max_countdown_s``; a longer wait is kept on the request (``not_before``) and
  the watchdog re-enqueues it when due (tierline.schedules.watchdog).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_VISIBILITY_S = 60.0


@dataclass(frozen=True)
class Lease:
    """The visibility timeout and what fits inside it, in seconds."""

    visibility_s: float = DEFAULT_VISIBILITY_S

    @property
    def call_s(self) -> float:
        return 0.5 * self.visibility_s

    @property
    def rounds_s(self) -> float:
        return 0.2 * self.visibility_s

    @property
    def write_s(self) -> float:
        return 0.2 * self.visibility_s

    @property
    def max_countdown_s(self) -> float:
        return 0.5 * self.visibility_s

