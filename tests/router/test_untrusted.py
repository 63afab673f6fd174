"""Hostile JSON is one InvalidInput with a reason, never a crash."""

from __future__ import annotations

import pytest

from tierline.router.errors import InvalidInput
from tierline.router.untrusted import check, loads


@pytest.mark.parametrize("data, reason", [
    ("[" * 100_000, "nested deeper"),
    ('{"a":' * 100 + "1" + "}" * 100, "nested deeper"),
    ('{"n": ' + "9" * 5000 + "}", "longer than"),
    ('{"n": 1e999}', "out of range"),
    ('{"n": NaN}', "not valid JSON"),
    ('{"p": "\\ud800"}', "lone surrogate"),
    ('{"p": "a\\u0000b"}', "NUL"),
    (b'{"p": "\xff"}', "not UTF-8"),
    ('{"p": ', "malformed JSON"),
])
def test_hostile_json_is_refused_with_a_reason(data: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        loads(data)


def test_ordinary_json_passes_including_brackets_inside_strings() -> None:
    assert loads('{"prompt": "' + "[" * 500 + '", "n": -12, "x": 1.5}') == {
        "prompt": "[" * 500, "n": -12, "x": 1.5}
    assert loads(b'[[[1]]]') == [[[1]]]


def test_values_from_the_python_api_are_checked_alike() -> None:
    check({"prompt": "fine", "metadata": {"n": 10**50}})
    with pytest.raises(InvalidInput, match="lone surrogate"):
        check({"prompt": "\ud800"})
    with pytest.raises(InvalidInput, match="longer than"):
        check({"n": 10**5000})
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested deeper"):
        check(deep)
