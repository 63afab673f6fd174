"""Server-sent events: bytes in, ``(event, data)`` pairs out, per the WHATWG rules both
OpenAI and Anthropic streams follow."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: its ``event:`` name ("message" when unnamed) and joined data."""

    name: str
    data: str


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Events from a byte stream: ``data:`` lines joined by newlines, ``:`` comments skipped."""
    name = ""
    data: list[str] = []
    for line in _iter_lines(chunks):
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue  # keep-alive comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        # "id" and "retry" steer browser reconnection; a model call never reconnects.
    if data:
        # The spec drops an event with no closing blank line; servers that end with
        # "data: [DONE]\n" and no blank line are common enough to accept it. A cut in the
        # middle of a JSON event still fails, at parsing.
        yield Event(name or "message", "\n".join(data))


def _iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines split on CRLF, CR or LF, across chunk boundaries."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        # A trailing CR may be the first half of a CRLF split across chunks: hold it back.
        held = b"\r" if buffer.endswith(b"\r") else b""
        parts = _LINE_END.split(buffer[: len(buffer) - len(held)])
        buffer = parts.pop() + held
        for part in parts:
            yield part.decode("utf-8", "replace")
    parts = _LINE_END.split(buffer)
    last = parts.pop()  # the unterminated rest, possibly empty
    for part in parts:
        yield part.decode("utf-8", "replace")
    if last:
        yield last.decode("utf-8", "replace")
