"""Request validation names the field that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierline.router.envelope import build_request
from tierline.router.errors import InvalidRequest
from tierline.router.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "demo.yaml")


def build(raw: object, **kw: object):  # type: ignore[no-untyped-def]
    return build_request(raw, POLICY, now_s=1000.0, new_id="r1", **kw)  # type: ignore[arg-type]


def test_a_prompt_becomes_one_user_message_with_the_lane_defaults() -> None:
    r = build({"prompt": "hello", "lane": "realtime"})
    assert r.messages == ({"role": "user", "content": "hello"},)
    assert r.max_output_tokens == POLICY.lanes["realtime"].max_output_tokens
    assert r.latency_budget_s == POLICY.lanes["realtime"].latency_budget_s
    assert r.deadline_at == 1000.0 + r.latency_budget_s
    assert (r.tenant, r.idempotency_key) == ("default", None)


def test_the_callers_id_is_the_idempotency_key_and_explicit_fields_win() -> None:
    r = build({"id": 7, "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "hi"}],
               "max_output_tokens": 10, "latency_budget_s": 2.5, "tenant": "acme"}, lane="batch")
    assert (r.idempotency_key, r.max_output_tokens, r.latency_budget_s) == ("7", 10, 2.5)
    assert (r.lane, r.tenant, r.deadline_at) == ("batch", "acme", 1002.5)
    assert r.prompt_text == "be brief\nhi"


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x" * 200_001}, "prompt"),
    ({"prompt": "hi", "lane": "urgent"}, "lane"),
    ({"prompt": "hi", "max_output_tokens": -1}, "max_output_tokens"),
    ({"prompt": "hi", "max_output_tokens": 1.5}, "max_output_tokens"),
    ({"prompt": "hi", "max_output_tokens": 10**9}, "max_output_tokens"),
    ({"prompt": "hi", "latency_budget_s": "soon"}, "latency_budget_s"),
    ({"prompt": "hi", "latency_budget_s": float("nan")}, "latency_budget_s"),
    ({"prompt": "hi", "metadata": [1]}, "metadata"),
    ({"prompt": "hi", "colour": "red"}, "colour"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "a"}], "prompt": "b"}, "messages"),
    (["not", "an", "object"], "<request>"),
])
def test_bad_requests_are_refused_naming_the_field(raw: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
