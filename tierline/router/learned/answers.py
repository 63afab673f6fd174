"""Final-answer extraction from a model's response: a choice letter, a number or a label.

Each extractor returns the answer as a short normalised string, or None when the response
gives none. ``EXTRACTORS`` maps an answer kind to its extractor; ``auto`` tries a stated
choice letter, then a number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Protocol

_CHOICE_STATED = re.compile(
    r"(?i:answer)\s*(?:(?i:is)|:)?\s*:?\s*\**\s*\(?\s*([A-Z])\s*\)?(?![A-Za-z/])"
)
_CHOICE_PAREN = re.compile(r"\(([A-J])\)")
_HASHES = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_BOXED = re.compile(r"\\boxed\{\s*\$?(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*|-?\.\d+")


class Extractor(Protocol):
    """Turns a response into its final answer, or None."""

    def __call__(self, text: str) -> str | None: ...


def extract_choice(text: str) -> str | None:
    """The letter of 'the answer is (X)' (last statement wins), else a lone '(X)' at the end."""
    stated = _CHOICE_STATED.findall(text)
    if stated:
        return str(stated[-1]).upper()
    tail = _CHOICE_PAREN.findall(text[-200:])
    return str(tail[-1]) if tail else None


def _normalise_number(raw: str) -> str | None:
    """A number's canonical text ('1,000.0' -> '1000'); one too large for a float is its own
    digits, so it still compares equal to itself and never raises."""
    cleaned = raw.replace(",", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(value):
        sign, digits = ("-", cleaned[1:]) if cleaned.startswith("-") else ("", cleaned)
        whole, _, part = digits.partition(".")
        part = part.rstrip("0")
        return sign + (whole.lstrip("0") or "0") + (f".{part}" if part else "")
    return str(int(value)) if value == int(value) else f"{value:g}"


def extract_number(text: str) -> str | None:
    """The number after '####' or in \\boxed{}, else the last number in the response."""
    for pattern in (_HASHES, _BOXED):
        found = pattern.findall(text)
        if found:
            return _normalise_number(found[-1])
    numbers = _NUMBER.findall(text)
    for raw in reversed(numbers):
        value = _normalise_number(raw)
        if value is not None:
            return value
    return None


def states_answer(text: str) -> bool:
    """Whether the response states its final answer ('the answer is', '####', \\boxed{})
    rather than leaving the extractor to guess from its last number."""
    return any(p.search(text) for p in (_CHOICE_STATED, _HASHES, _BOXED))


def extract_auto(text: str) -> str | None:
    """A stated choice letter when the response states one, else a number."""
    stated = _CHOICE_STATED.findall(text)
    if stated:
        return str(stated[-1]).upper()
    return extract_number(text)


def label_extractor(labels: Sequence[str]) -> Callable[[str], str | None]:
    """An extractor for a label set: the label mentioned last (whole word, any case)."""
    if not labels:
        raise ValueError("label_extractor needs at least one label")
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(lab) for lab in sorted(labels, key=len, reverse=True))
        + r")(?![\w-])",
        re.IGNORECASE,
    )
    canonical = {lab.lower(): lab for lab in labels}

    def extract(text: str) -> str | None:
        found = pattern.findall(text)
        return canonical[found[-1].lower()] if found else None

    return extract


EXTRACTORS: dict[str, Extractor] = {
    "choice": extract_choice,
    "number": extract_number,
    "auto": extract_auto,
}
# Which extractor reads the responses of a dataset graded by each grader kind.
EXTRACTOR_FOR_GRADER: dict[str, str] = {"choice": "choice", "recorded": "auto"}
