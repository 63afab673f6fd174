"""Reading producer input lazily, with line numbers, so a bad line is reported, never fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAX_LINE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Line:
    """One input line: its number (from 1) and either the parsed object or why it failed."""

    number: int
    value: Any = None
    error: str | None = None
    nbytes: int = 0


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
                       nbytes=size)
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Line(number, error=f"not UTF-8: {exc.reason} at byte {exc.start}", nbytes=size)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Line(number, error=f"malformed JSON: {exc.msg} (column {exc.colno})",
                       nbytes=size)
            continue
        yield Line(number, value=value, nbytes=size)


class RejectLog:
    """Writes rejected lines to a JSONL file, opened only when the first reject arrives."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._handle: IO[str] | None = None

    def add(self, number: int, reason: str) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        self._handle.write(json.dumps({"line": number, "reason": reason}) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
