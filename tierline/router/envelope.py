"""The request envelope: what a producer hands tierline, validated once at the door."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tierline.router.errors import InvalidInput, InvalidRequest
from tierline.router.policy import LANES, Policy
from tierline.router.untrusted import check

ROLES = ("system", "user", "assistant", "tool")
MAX_KEY_CHARS = 256  # the requests table's idempotency_key column


@dataclass(frozen=True)
class Request:
    """One unit of LLM work. Times are UNIX seconds; ``deadline_at`` = submitted + budget."""

    id: str
    tenant: str
    lane: str
    messages: tuple[dict[str, str], ...]
    max_output_tokens: int
    latency_budget_s: float
    submitted_at: float
    deadline_at: float
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stream: bool = False  # publish the answer's text as it is written (workers.engine.relay)

    @property
    def prompt_text(self) -> str:
        """All message contents joined: what the estimators read."""
        return "\n".join(m["content"] for m in self.messages)

    def remaining_s(self, now_s: float) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline_at - now_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "lane": self.lane,
            "messages": [dict(m) for m in self.messages],
            "max_output_tokens": self.max_output_tokens,
            "latency_budget_s": self.latency_budget_s,
            "submitted_at": self.submitted_at,
            "deadline_at": self.deadline_at,
            "idempotency_key": self.idempotency_key,
            "metadata": dict(self.metadata),
            "stream": self.stream,
        }


def _shown(value: Any, max_chars: int = 60) -> str:
    """A value for an error message: its repr, cut to ``max_chars`` (a lane may be 2 MB)."""
    text = repr(value)
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def _messages(raw: dict[str, Any]) -> tuple[dict[str, str], ...]:
    if "messages" in raw and raw["messages"] is not None:
        if "prompt" in raw and raw["prompt"] is not None:
            raise InvalidRequest("messages", "give either 'messages' or 'prompt', not both")
        items = raw["messages"]
        if not isinstance(items, list) or not items:
            raise InvalidRequest("messages", "must be a non-empty list of {role, content}")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidRequest(f"messages[{i}]", "must be an object with role and content")
            role, content = item.get("role"), item.get("content")
            if role not in ROLES:
                raise InvalidRequest(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
            if not isinstance(content, str):
                raise InvalidRequest(f"messages[{i}].content", "must be a string")
            out.append({"role": role, "content": content})
        if not any(m["content"].strip() for m in out):
            raise InvalidRequest("messages", "all message contents are empty")
        return tuple(out)
    prompt = raw.get("prompt")
    if prompt is None:
        raise InvalidRequest("prompt", "missing: give 'prompt' (a string) or 'messages'")
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt", f"must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidRequest("prompt", "is empty")
    return ({"role": "user", "content": prompt},)


def _positive(raw: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(name, f"must be a number, got {_shown(value)}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequest(name, f"must be positive, got {_shown(value)}")
    if kind is int and value != int(value):
        raise InvalidRequest(name, f"must be a whole number, got {_shown(value)}")
    return kind(value)


def build_request(
    raw: Any,
    policy: Policy,
    *,
    now_s: float,
    new_id: str,
    lane: str | None = None,
    tenant: str | None = None,
) -> Request:
    """Validate one raw request (a dict from JSON or the API) into a :class:`Request`.

    ``lane`` and ``tenant`` are defaults that the raw request's own fields override.
    Raises :class:`InvalidRequest` naming the first field that is wrong, the first value
    that no JSON writer or database would take (:func:`tierline.router.untrusted.check`) included.
    """
    if not isinstance(raw, dict):
        raise InvalidRequest("<request>", f"must be a JSON object, got {type(raw).__name__}")
    try:
        check(raw)
    except InvalidInput as exc:
        where, _, reason = str(exc).partition(": ")
        if not where.startswith("$") or not reason:
            where, reason = "$", str(exc)
        raise InvalidRequest(where.removeprefix("$").removeprefix(".") or "<request>", reason
                             ) from None
    known = {"id", "tenant", "lane", "messages", "prompt", "metadata", "max_output_tokens",
             "latency_budget_s", "idempotency_key", "stream"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidRequest(unknown[0][:60], f"unknown field (known: {', '.join(sorted(known))})")
    lane = raw.get("lane") or lane or "standard"
    if lane not in LANES:
        raise InvalidRequest("lane", f"unknown lane {_shown(lane)}; use one of {', '.join(LANES)}")
    tenant = raw.get("tenant") or tenant or "default"
    if not isinstance(tenant, str) or len(tenant) > 128:
        raise InvalidRequest("tenant", "must be a string of at most 128 characters")
    messages = _messages(raw)
    chars = sum(len(m["content"]) for m in messages)
    if chars > policy.requests.max_prompt_chars:
        raise InvalidRequest(
            "prompt",
            f"too long: {chars} characters, the limit is {policy.requests.max_prompt_chars}"
        )
    lane_spec = policy.lanes[lane]  # type: ignore[index]
    max_out = _positive(raw, "max_output_tokens", int, lane_spec.max_output_tokens)
    if max_out > policy.requests.max_output_tokens:
        raise InvalidRequest(
            "max_output_tokens", f"{max_out} exceeds the limit {policy.requests.max_output_tokens}"
        )
    largest = policy.largest_daily_budget
    needed = chars // 4 + 1 + max_out
    if largest is not None and needed > largest:
        raise InvalidRequest(
            "prompt", f"needs up to {needed} tokens, more than any model's whole daily budget "
            f"({largest}); it could never run")
    budget = _positive(raw, "latency_budget_s", float, lane_spec.latency_budget_s)
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata", "must be an object")
    stream = raw.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream", f"must be true or false, got {_shown(stream)}")
    key = raw.get("idempotency_key", raw.get("id"))
    if key is not None and (not isinstance(key, (str, int)) or isinstance(key, bool)):
        raise InvalidRequest("idempotency_key", "must be a string")
    if key is not None and len(str(key)) > MAX_KEY_CHARS:
        raise InvalidRequest("idempotency_key", f"longer than {MAX_KEY_CHARS} characters")
    return Request(
        id=new_id,
        tenant=tenant,
        lane=lane,
        messages=messages,
        max_output_tokens=max_out,
        latency_budget_s=budget,
        submitted_at=now_s,
        deadline_at=now_s + budget,
        idempotency_key=None if key is None else str(key),
        metadata=metadata,
        stream=stream,
    )
