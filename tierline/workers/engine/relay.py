"""An answer's text as it is generated, from the tier worker that calls the model to whoever
streams the request (the gateway).

Only a request that asks to stream (``Request.stream``) under a strategy that accepts its
first answer (``kind: single``) is relayed: under a cascade or a panel, an answer may still
be replaced, so its text is not shown before it is accepted. Each request has its own
stream of events, kept in Redis (XADD, capped, expiring) so that the worker and the reader
may be on different hosts and the reader may start before or after the worker:

- ``begin``: an attempt starts answering; its text names the model. A second ``begin``
  means the attempt before it failed part-way (the call falls back or is retried), so the
  text relayed so far is void.
- ``text``: the next piece of the answer.
- ``end``: the request's result is committed; read it from the database.

On the embedded stack the same events go through this process's memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

KEEP_S = 600  # a stream's events outlive any latency budget a reader waits for
MAX_EVENTS = 20_000  # per request: far more than the pieces of any answer


@dataclass(frozen=True)
class Event:
    """One event of a request's stream: ``kind`` is begin, text or end."""

    kind: str
    text: str = ""


class Relay(Protocol):
    """Where answers' pieces go, by request id; ``cursor`` "" reads from the start."""

    def publish(self, request_id: str, events: Sequence[Event]) -> None: ...

    def read(self, request_id: str, cursor: str, block_s: float
             ) -> tuple[list[Event], str]: ...


class MemoryRelay:
    """The embedded stack's relay: events in this process, forgotten after ``KEEP_S``."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[float, list[Event]]] = {}
        self._changed = threading.Condition()

    def publish(self, request_id: str, events: Sequence[Event]) -> None:
        with self._changed:
            now = time.monotonic()
            for rid in [r for r, (at, _) in self._events.items() if now - at > KEEP_S]:
                del self._events[rid]
            _, kept = self._events.setdefault(request_id, (now, []))
            kept.extend(events)
            del kept[:-MAX_EVENTS]
            self._changed.notify_all()

    def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Event], str]:
        start = int(cursor or 0)
        deadline = time.monotonic() + block_s
        with self._changed:
            while True:
                kept = self._events.get(request_id, (0.0, []))[1]
                if len(kept) > start or (left := deadline - time.monotonic()) <= 0:
                    return kept[start:], str(max(start, len(kept)))
                self._changed.wait(left)


class RedisRelay:
    """Events on a Redis stream per request (``tierline:relay:<request id>``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def key(request_id: str) -> str:
        return f"tierline:relay:{request_id}"

    def publish(self, request_id: str, events: Sequence[Event]) -> None:
        key = self.key(request_id)
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(key, {"k": event.kind, "t": event.text}, maxlen=MAX_EVENTS,
                      approximate=True)
        pipe.expire(key, KEEP_S)
        pipe.execute()

    def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Event], str]:
        block_ms = max(1, int(block_s * 1000))
        found = self.client.xread({self.key(request_id): cursor or "0-0"}, block=block_ms)
        events, last = [], cursor
        for _key, entries in found or []:
            for entry_id, fields in entries:
                events.append(Event(_text(fields[b"k"]), _text(fields.get(b"t", b""))))
                last = _text(entry_id)
        return events, last


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Sink:
    """One request's side of the relay, handed to its calls: they say when an attempt
    begins and pass on each piece of text. A relay that fails (Redis unreachable) never
    fails the call: the sink stops publishing, and the reader gets the rest of the answer
    from its result."""

    def __init__(self, relay: Relay, request_id: str, model: str) -> None:
        self.relay, self.request_id, self.model = relay, request_id, model
        self.broken = False

    def begin(self) -> None:
        self._publish(Event("begin", self.model))

    def text(self, piece: str) -> None:
        if piece:
            self._publish(Event("text", piece))

    def _publish(self, event: Event) -> None:
        if self.broken:
            return
        try:
            self.relay.publish(self.request_id, [event])
        except Exception:
            self.broken = True
            log.warning("request %s: cannot relay its answer as it is generated; the reader "
                        "gets it whole", self.request_id, exc_info=True)


def end_streams(relay: Relay, request_ids: Sequence[str]) -> None:
    """Tell the readers of these requests that their results are committed. A failing relay
    is logged, never raised: the results are safe, and readers also look at the database."""
    try:
        for request_id in request_ids:
            relay.publish(request_id, [Event("end")])
    except Exception:
        log.warning("cannot tell %d streamed requests' readers that they ended; they will see "
                    "it in the database", len(request_ids), exc_info=True)
