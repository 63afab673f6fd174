"""Parsing JSON that a stranger wrote: bounded depth and numbers, text that can be stored.

Every intake (CLI files, the Python API, batch files, the gateway) parses with ``loads`` or
checks ready-made values with ``check``, so a hostile line is one ``InvalidInput`` with a
reason, never a ``RecursionError``, a 5,000-digit integer, ``NaN``, or a string Postgres and
UTF-8 writers refuse (NUL, lone surrogates).
"""

from __future__ import annotations

import json
import math
from typing import Any

from tierline.router.errors import InvalidInput

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as JSON within the bounds above; raise InvalidInput saying why not."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = data
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:  # a depth the scan missed must still not escape
        raise InvalidInput(f"JSON nested deeper than {max_depth} levels") from None
    check(value, max_depth=max_depth)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Check an already-parsed value (from the Python API): depth, numbers and text."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, where = stack.pop()
        if depth > max_depth:
            raise InvalidInput(f"JSON nested deeper than {max_depth} levels")
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if item.bit_length() > MAX_NUMBER_CHARS * 4:
                raise InvalidInput(f"{where}: number longer than {MAX_NUMBER_CHARS} digits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{where}: number is not finite")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"{where}: object key {key!r} is not text")
                _check_text(key, where)
                stack.append((inner, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(item, list | tuple):
            stack.extend((inner, depth + 1, f"{where}[{i}]") for i, inner in enumerate(item))
        else:
            raise InvalidInput(f"{where}: {type(item).__name__} is not a JSON value")


def _check_depth(text: str, max_depth: int) -> None:
    """Reject nesting past ``max_depth`` in one pass, before the recursive parser sees it."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise InvalidInput(f"JSON nested deeper than {max_depth} levels")
        elif char in "]}":
            depth -= 1


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidInput(f"{where}: text holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{where}: text holds a lone surrogate at character {exc.start}"
                           ) from None


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_CHARS:
        raise InvalidInput(f"number longer than {MAX_NUMBER_CHARS} digits")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise InvalidInput(f"number longer than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidInput(f"number {literal[:20]} is out of range")
    return value


def _constant(literal: str) -> float:
    raise InvalidInput(f"{literal} is not valid JSON")
