"""Reading producer input lazily, with line numbers, so a bad line is reported, never fatal.

Lines are parsed with :func:`tierline.router.untrusted.loads`: deep nesting, huge or non-finite
numbers, NUL, lone surrogates and bytes that are not UTF-8 are a reason on that line, and
the lines around it are read as usual. A rejected line is written to the rejects file with
its number, its reason and its text (cut to ``MAX_REJECT_TEXT_CHARS``).
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tierline.router.errors import InvalidInput
from tierline.router.untrusted import loads

MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_REJECT_TEXT_CHARS = 1000


@dataclass(frozen=True)
class Line:
    """One input line: its number (from 1) and either the parsed object or why it failed;
    ``raw`` is the line as read, kept so a rejected line can be shown."""

    number: int
    value: Any = None
    error: str | None = None
    nbytes: int = 0
    raw: bytes | None = field(default=None, repr=False)


def read_jsonl(path: Path) -> Iterator[Line]:
    """Parse a JSONL file line by line; blank lines are skipped, bad ones carry an error."""
    with path.open("rb") as handle:
        yield from parse_jsonl(handle)


def parse_jsonl(handle: IO[bytes]) -> Iterator[Line]:
    """Parse JSON lines from a binary stream."""
    for number, raw in enumerate(handle, start=1):
        size = len(raw)
        if size > MAX_LINE_BYTES:
            yield Line(number, error=f"line is {size} bytes, the limit is {MAX_LINE_BYTES}",
                       nbytes=size, raw=raw[:4 * MAX_REJECT_TEXT_CHARS + 4])
            continue
        if not raw.strip():
            continue
        try:
            value = loads(raw)
        except InvalidInput as exc:
            yield Line(number, error=str(exc), nbytes=size, raw=raw)
            continue
        yield Line(number, value=value, nbytes=size, raw=raw)


def excerpt(source: Any, max_chars: int = MAX_REJECT_TEXT_CHARS) -> tuple[str, bool]:
    """What a rejected item held, as text of at most ``max_chars``, and whether it was cut.

    Bytes that are not UTF-8 are shown as ``\\xNN``; a Python item (from the API) is shown
    by its repr, bounded in depth and length, so a 100,000-deep list or a 5,000-digit
    number shows as a short text.
    """
    if isinstance(source, bytes | bytearray):
        text = bytes(source[:4 * max_chars + 4]).rstrip(b"\r\n").decode(
            "utf-8", errors="backslashreplace")
        cut = len(source.rstrip(b"\r\n")) > 4 * max_chars + 4
    elif isinstance(source, str):
        text, cut = source, False
    else:
        text, cut = _repr(source), False
    if len(text) > max_chars:
        return text[:max_chars], True
    return text, cut


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = MAX_REJECT_TEXT_CHARS
_SHORT_REPR.maxlong = 100
_SHORT_REPR.maxdict = _SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = 50


def _repr(item: Any) -> str:
    try:
        return _SHORT_REPR.repr(item)
    except (ValueError, RecursionError):  # past int's repr limit; a repr that recurses
        return f"<{type(item).__name__}>"


class RejectLog:
    """Writes rejected lines to a JSONL file, opened only when the first reject arrives:
    ``line``, ``reason``, ``text`` (the line, cut to ``MAX_REJECT_TEXT_CHARS``) and
    ``text_truncated``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._handle: IO[str] | None = None

    def add(self, number: int, reason: str, source: Any = None) -> None:
        """Record line ``number``'s rejection; ``source`` is what it held (bytes or an item)."""
        self.count += 1
        if self.path is None:
            return
        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        entry: dict[str, Any] = {"line": number, "reason": reason}
        if source is not None:
            entry["text"], entry["text_truncated"] = excerpt(source)
        # ensure_ascii: a lone surrogate or a NUL is written escaped, never refused
        self._handle.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
