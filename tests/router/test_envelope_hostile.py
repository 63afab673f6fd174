"""Hostile values in a request envelope are one InvalidRequest naming the field, never a
crash: the router's validation is the last gate before Postgres and the providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tierline.router.envelope import build_request
from tierline.router.errors import InvalidRequest
from tierline.router.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "demo.yaml")


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):  # built without recursion: 100,000 levels
        value = [value]
    return value


@pytest.mark.parametrize(("raw", "field", "says"), [
    ({"prompt": "hi", "metadata": {"a": _nested(100_000)}}, "<request>", "nested deeper"),
    ({"prompt": "hi", "latency_budget_s": 10 ** 5000}, "latency_budget_s", "100 digits"),
    ({"prompt": "hi", "max_output_tokens": 10 ** 5000}, "max_output_tokens", "100 digits"),
    ({"prompt": "hi", "idempotency_key": 10 ** 5000}, "idempotency_key", "100 digits"),
    ({"prompt": "hi", "latency_budget_s": float("nan")}, "latency_budget_s", "not finite"),
    ({"prompt": "hi", "metadata": {"x": float("inf")}}, "metadata.x", "not finite"),
    ({"prompt": "\ud800 hi"}, "prompt", "lone surrogate"),
    ({"messages": [{"role": "user", "content": "a\udfffb"}]}, "messages[0].content",
     "lone surrogate"),
    ({"prompt": "a\x00b"}, "prompt", "NUL"),
    ({"prompt": "hi", "metadata": {"k\x00": 1}}, "metadata", "NUL"),
    ({"prompt": "hi", "tenant": "t\ud800"}, "tenant", "lone surrogate"),
    ({"prompt": "hi", "idempotency_key": "k" * 257}, "idempotency_key", "256 characters"),
    ({"prompt": "x" * 2_000_000}, "prompt", "too long"),
    ({"prompt": b"bytes"}, "prompt", "not a JSON value"),
    ({"prompt": "hi", "lane": "l" * 2_000_000}, "lane", "unknown lane"),
])
def test_a_hostile_value_is_refused_naming_its_field(raw: dict[str, Any], field: str,
                                                     says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        build_request(raw, POLICY, now_s=0.0, new_id="r1")
    assert refused.value.field == field
    assert says in refused.value.reason
    assert len(str(refused.value)) < 300  # a 2 MB value is not echoed back


def test_unusual_but_valid_text_is_accepted() -> None:
    text = "emoji \U0001f600, CJK 漢字, RTL \u202e, escapes \\u0000 as text"
    request = build_request({"prompt": text, "idempotency_key": "k" * 256,
                             "metadata": {"n": 10 ** 99, "deep": _nested(60)}},
                            POLICY, now_s=0.0, new_id="r1")
    assert request.messages[0]["content"] == text


@pytest.mark.parametrize(("content", "says"), [
    (b"[" * 100_000, "nested too deeply"),
    (b"name: x\nrequests: {max_prompt_chars: " + b"9" * 5000 + b"}\n", "number too long"),
    (b"name: caf\xe9\n", "not UTF-8"),
])
def test_a_hostile_policy_file_is_one_policy_error(tmp_path: Path, content: bytes,
                                                   says: str) -> None:
    from tierline.router.errors import PolicyError

    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    with pytest.raises(PolicyError, match=says):
        load_policy(path)
