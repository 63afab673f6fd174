"""A response's numbers, checked against themselves and the prompt.

* Arithmetic claims: ``12 * 4 = 48`` holds, ``12 * 4 = 46`` fails. Only plain claims are
  checked: numbers joined by ``+ - * / x × ÷`` on the left, one number on the right;
  anything else (units, percentages, variables) is skipped.
* A stated answer that is not the result of the last claim, or that only repeats a number
  the prompt gave, or that has a fractional part.
* Numbers the prompt gives that the response never uses.

A worked answer whose own sums do not add up is likely wrong; the response scorer learns
how much each sign is worth for each model (on a task without numbers, nothing).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_CLAIM = re.compile(
    rf"(?<![\w.%/^])((?:\$?{_NUMBER}\s*[-+*/x×÷]\s*)+\$?{_NUMBER})\s*=\s*\$?(-?{_NUMBER})(?![\w%^])"
)
_NUMBERS = re.compile(_NUMBER)
_TOKEN = re.compile(rf"{_NUMBER}|[-+*/x×÷]")
_TOLERANCE = 0.01  # relative: "10 / 3 = 3.33" holds; rounding to a whole number may not
MAX_CLAIMS = 64  # a long response: its first claims are plenty


def _value(expression: str) -> float | None:
    """Left to right with * and / before + and -; None when it cannot be evaluated."""
    terms: list[float] = []
    sign, product, op = 1.0, None, "*"
    for token in _TOKEN.findall(expression.replace("$", "")):
        if token in "+-":
            if product is None:
                return None
            terms.append(sign * product)
            sign, product, op = (1.0 if token == "+" else -1.0), None, "*"
        elif token in "*/x×÷":
            if product is None:
                return None
            op = "/" if token in "/÷" else "*"
        else:
            number = float(token.replace(",", ""))
            if product is None:
                product = number
            elif op == "/":
                if number == 0:
                    return None
                product /= number
            else:
                product *= number
            op = ""
    if product is None:
        return None
    return sum(terms) + sign * product


class Claims(NamedTuple):
    """What a response's plain arithmetic claims come to."""

    held: int
    failed: int
    last: float | None  # the right-hand side of the last claim checked


def check_claims(text: str) -> Claims:
    """Check the response's plain arithmetic claims (the first ``MAX_CLAIMS``)."""
    held = failed = 0
    right = None
    for match in _CLAIM.finditer(text):
        if held + failed >= MAX_CLAIMS:
            break
        left = _value(match.group(1))
        if left is None:
            continue
        right = float(match.group(2).replace(",", ""))
        if abs(left - right) <= max(_TOLERANCE * abs(right), 0.011):
            held += 1
        else:
            failed += 1
    return Claims(held, failed, right)


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").replace(",", ""))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def differs_from_last(answer: str | None, claims: Claims) -> bool:
    """Whether a numeric answer is not what the response's last claim computed."""
    value = _number(answer)
    return value is not None and claims.last is not None and abs(value - claims.last) > 1e-9


def echoes_prompt(prompt: str, answer: str | None) -> bool:
    """Whether a numeric answer only repeats a number given in the prompt."""
    value = _number(answer)
    return value is not None and value in {_number(n) for n in _NUMBERS.findall(prompt)}


def unused_share(prompt: str, response: str) -> float:
    """The share of the prompt's distinct numbers that the response never mentions."""
    given = {_number(n) for n in _NUMBERS.findall(prompt)} - {None}
    if not given:
        return 0.0
    used = {_number(n) for n in _NUMBERS.findall(response)}
    return len(given - used) / len(given)


def is_fractional(answer: str | None) -> bool:
    """Whether an extracted answer is a number with a fractional part."""
    value = _number(answer)
    return value is not None and value != int(value)
