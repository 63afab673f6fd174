"""Rows of a classification job: read lazily from CSV or JSONL, rejected rows and outputs written.

A row is one data record: a CSV record after the header, or a non-blank JSONL line,
numbered from 1. A bad row carries its reason and never stops the file; a file that
cannot be read as a whole (a column that is not there) is one error naming the columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tierline.producer.intake import parse_jsonl
from tierline.producer.jobspec import JobSpec
from tierline.router.errors import InvalidInput

MAX_FIELD_CHARS = 16 * 1024 * 1024  # csv's default (128 KiB) would stop the file on a big row


@dataclass(frozen=True)
class Row:
    """One input record: its number, where it starts, its fields or why it is unusable."""

    row: int
    line: int
    text: str | None = None
    id: str | None = None
    gold: str | None = None
    error: str | None = None
    nbytes: int = 0


def read_rows(spec: JobSpec) -> Generator[Row, None, None]:
    """The job's rows in order, at most ``spec.limit`` of them."""
    reader = _csv_rows if spec.format == "csv" else _jsonl_rows
    for row in reader(spec):
        if spec.limit is not None and row.row > spec.limit:
            return
        yield row


def check_readable(spec: JobSpec) -> None:
    """Raise now, before any job exists, if the file as a whole is unusable (a missing column)."""
    rows = read_rows(spec)
    try:
        next(rows, None)
    finally:
        rows.close()


def _field(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _text_error(text: Any, column: str) -> str | None:
    if not isinstance(text, str):
        return f"column {column!r} must hold a string, got {type(text).__name__}"
    if not text.strip():
        return f"empty text in column {column!r}"
    return None


def _decoded(handle: IO[bytes], consumed: list[int]) -> Iterator[str]:
    """Lines of a binary file as text, counting the bytes read into ``consumed[0]``."""
    for raw in handle:
        consumed[0] += len(raw)
        yield raw.decode("utf-8", errors="replace")


def _csv_rows(spec: JobSpec) -> Iterator[Row]:
    csv.field_size_limit(MAX_FIELD_CHARS)
    consumed = [0]
    with spec.input.open("rb") as handle:
        reader = csv.reader(_decoded(handle, consumed))
        header = next(reader, None)
        if header is None:
            raise InvalidInput(f"{spec.input}: empty file, no header row")
        wanted = [c for c in (spec.text_column, spec.id_column, spec.gold_column) if c]
        for column in wanted:
            if column not in header:
                raise InvalidInput(f"{spec.input}: no column {column!r}; the columns are: "
                                   f"{', '.join(header)}")
        at = {c: header.index(c) for c in wanted}
        number, line, used = 0, reader.line_num + 1, consumed[0]
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield Row(number, line, error=f"unreadable CSV record: {exc}",
                          nbytes=consumed[0] - used)
                line, used = reader.line_num + 1, consumed[0]
                continue
            if not fields:  # a blank line is no record
                line, used = reader.line_num + 1, consumed[0]
                continue
            number += 1
            nbytes = consumed[0] - used
            if len(fields) != len(header):
                yield Row(number, line, error=f"{len(fields)} fields, the header has "
                                              f"{len(header)}", nbytes=nbytes)
            else:
                text = fields[at[spec.text_column]]
                yield Row(number, line, text=text,
                          id=_field(fields[at[spec.id_column]]) if spec.id_column else None,
                          gold=_field(fields[at[spec.gold_column]]) if spec.gold_column else None,
                          error=_text_error(text, spec.text_column), nbytes=nbytes)
            line, used = reader.line_num + 1, consumed[0]


def _jsonl_rows(spec: JobSpec) -> Iterator[Row]:
    checked = False
    with spec.input.open("rb") as handle:
        for number, parsed in enumerate(parse_jsonl(handle), start=1):
            if parsed.error:
                yield Row(number, parsed.number, error=parsed.error, nbytes=parsed.nbytes)
                continue
            obj = parsed.value
            if not isinstance(obj, dict):
                yield Row(number, parsed.number, error="not a JSON object",
                          nbytes=parsed.nbytes)
                continue
            if not checked:  # the first object stands for the file, as a CSV header would
                checked = True
                if spec.text_column not in obj:
                    raise InvalidInput(f"{spec.input}: line {parsed.number}: no field "
                                       f"{spec.text_column!r}; the fields are: {', '.join(obj)}")
            if spec.text_column not in obj:
                yield Row(number, parsed.number, error=f"no field {spec.text_column!r}",
                          nbytes=parsed.nbytes)
                continue
            text = obj[spec.text_column]
            yield Row(number, parsed.number, text=text if isinstance(text, str) else None,
                      id=_field(obj.get(spec.id_column)) if spec.id_column else None,
                      gold=_field(obj.get(spec.gold_column)) if spec.gold_column else None,
                      error=_text_error(text, spec.text_column), nbytes=parsed.nbytes)


class ErrorLog:
    """Rejected rows as JSON lines (``row``, ``line``, ``id``, ``reason``), opened on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._handle: IO[str] | None = None

    def add(self, row: int, reason: str, *, line: int | None = None,
            row_id: str | None = None) -> None:
        self.count += 1
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("w", encoding="utf-8")
        entry = {"row": row, "line": line, "id": row_id, "reason": reason}
        self._handle.write(json.dumps({k: v for k, v in entry.items() if v is not None}) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_errors(path: Path) -> dict[int, str]:
    """Reasons by row number from an errors file written by :class:`ErrorLog` (none if absent)."""
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as handle:
        return {entry["row"]: entry["reason"] for entry in map(json.loads, handle)}


class OutputWriter:
    """Writes output rows as JSONL, or CSV with a fixed header, by the path's extension."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._csv = None
        if path.suffix.lower() == ".csv":
            self._csv = csv.writer(self._handle)
            self._csv.writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self._csv is not None:
            self._csv.writerow(["" if row.get(c) is None else row[c] for c in self.columns])
        else:
            self._handle.write(json.dumps({c: row.get(c) for c in self.columns}) + "\n")

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._handle.close()
