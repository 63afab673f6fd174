"""Following a streamed request: the pieces of its answer as the tier worker relays them
(:mod:`tierline.workers.engine.relay`), for the gateway's server-sent events and ``Client.stream``.

A reader follows until the request's result is committed (the relay's ``end``, or the
request's row says so: it may have ended without a word, cancelled or expired), or its time
is up; the caller then reads the result. A second ``begin`` after text was relayed means the
call broke part-way and another answered: :class:`AnswerReplaced`. If the relay itself
fails, following stops quietly, and the caller takes the rest of the answer from the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tierline.record.realtime import status_of
from tierline.router.errors import TierlineError
from tierline.workers.runtime import Runtime

log = logging.getLogger(__name__)

LOOK_EVERY_S = 1.0  # how often a reader also looks at the request's row
ENDED = ("done", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class Piece:
    """The next piece of an answer, and the model writing it."""

    text: str
    model: str


class AnswerReplaced(TierlineError):
    """A call broke part-way through a streamed answer and another model answered instead:
    the text streamed so far is void. ``answer`` is the whole answer that replaced it, when
    known."""

    def __init__(self, message: str, answer: str | None = None) -> None:
        super().__init__(message)
        self.answer = answer


class RequestFailed(TierlineError):
    """A streamed request ended without an answer (``status``: failed, expired, cancelled),
    or was not answered in time (``status``: the state it was left in)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


def follow(rt: Runtime, request_id: str, timeout_s: float) -> Iterator[Piece]:
    """The pieces of a streamed request's answer as they are relayed, until it ends or
    ``timeout_s`` passes; raises :class:`AnswerReplaced` as described above."""
    cursor, model, sent = "", "", False
    deadline = time.monotonic() + timeout_s
    look_at = time.monotonic()  # at once: a repeated key's request may be done already
    while (left := deadline - time.monotonic()) > 0:
        if time.monotonic() >= look_at:
            if _ended(rt, request_id):
                return
            look_at = time.monotonic() + LOOK_EVERY_S
        try:
            events, cursor = rt.relay.read(request_id, cursor, min(left, LOOK_EVERY_S))
        except Exception:
            log.warning("request %s: cannot read its relayed answer; the rest comes whole",
                        request_id, exc_info=True)
            return
        for event in events:
            if event.kind == "begin":
                if sent:
                    raise AnswerReplaced(f"request {request_id}: a call failed part-way "
                                         "through its answer and another model answered "
                                         "instead; the text streamed so far is void")
                model = event.text
            elif event.kind == "text":
                sent = True
                yield Piece(event.text, model)
            elif event.kind == "end":
                return


def rest_of(answer: str, sent: str, replaced: bool, request_id: str) -> str:
    """What is left to send of ``answer`` once ``sent`` has gone out; raises
    :class:`AnswerReplaced` (carrying ``answer``) when the text sent is not its beginning."""
    if replaced or not answer.startswith(sent):
        raise AnswerReplaced(f"request {request_id}: a call failed part-way through its "
                             "answer and another model answered instead; the text streamed "
                             "so far is void", answer=answer)
    return answer[len(sent):]


def _ended(rt: Runtime, request_id: str) -> bool:
    """Whether the request has ended (an id with no row has not, or not yet)."""
    return status_of(rt.engine, request_id) in ENDED
