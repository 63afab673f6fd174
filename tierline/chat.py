"""Chat completions through tierline, as OpenAI's API shapes them: submit one request,
wait for its answer within the lane's latency budget, and answer it as a ``chat.completion``
or as ``chat.completion.chunk`` events (:mod:`tierline.gateway` serves them over HTTP).

A streamed request is answered piece by piece where its strategy accepts the first answer
(``kind: single``): the tier worker relays the text as the model writes it
(:mod:`workers.relay`, followed by :mod:`tierline.streams`). Under a cascade or a panel the
answer may still be replaced, so it comes in one chunk once it is accepted. Errors found
before the answer starts are raised (:class:`~tierline.openai_shapes.HttpError`); later
ones are ``error`` events, which OpenAI's SDKs raise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from router.errors import InvalidInput
from router.policy import LANES
from tierline.client import Client
from tierline.openai_shapes import HttpError, bad, completion, request_fields
from tierline.streams import AnswerReplaced, follow, rest_of
from workers.answers import job_of, usage_of
from workers.calls import relays

WAIT_MARGIN_S = 2.0
MAX_WAIT_S = 120.0  # an HTTP call should not hang for a batch lane's day-long budget
DEFAULT_LANE = "realtime"
JOB_NAME = "gateway"


class Chat:
    """One client's chat completions; ``max_wait_s`` caps any wait for an answer."""

    def __init__(self, client: Client, max_wait_s: float = MAX_WAIT_S) -> None:
        self.client = client
        self.max_wait_s = max_wait_s

    def complete(self, body: Any, lane: str | None, key: str | None,
                 tenant: str | None = None) -> dict[str, Any]:
        """Submit one chat completion, wait for its answer, and shape it like OpenAI's."""
        return self._completed(self._submit(body, lane, key, tenant, stream=False))

    def stream(self, body: Any, lane: str | None, key: str | None, tenant: str | None,
               include_usage: bool) -> list[dict[str, Any]] | Iterator[dict[str, Any]]:
        """Submit one chat completion and answer it as OpenAI's chunk events: its text as
        the model generates it where the strategy accepts the first answer (``single``; see
        workers.relay), else the whole answer in one chunk once it is accepted. Errors found
        before the answer starts are raised (ordinary JSON errors); later ones are events."""
        submitted = self._submit(body, lane, key, tenant, stream=True)
        if not relays(self.client.rt.policy.strategy):
            return chunks(self._completed(submitted), include_usage)
        return self._relayed(submitted, include_usage)

    def _submit(self, body: Any, lane: str | None, key: str | None, tenant: str | None, *,
                stream: bool) -> _Submitted:
        lane = lane or DEFAULT_LANE
        if lane not in LANES:
            raise bad(f"X-Tierline-Lane: unknown lane {lane!r}; use one of {', '.join(LANES)}",
                      "lane")
        raw = request_fields(body)
        if key:
            raw["id"] = key
        if stream:
            raw["stream"] = True
        try:
            report = self.client.submit_many([raw], lane=lane, job=JOB_NAME, tenant=tenant,
                                             on_reject=_reject)
        except InvalidInput as exc:  # OpenAI's name for the one field whose name differs
            message = str(exc).replace("max_output_tokens:", "max_tokens:", 1)
            raise bad(message, "invalid_request") from exc
        request_id = report.request_ids[0]
        budget_s = self.client.rt.policy.lanes[lane].latency_budget_s  # type: ignore[index]
        return _Submitted(request_id, self._job_of(request_id), bool(key),
                          min(budget_s + WAIT_MARGIN_S, self.max_wait_s), time.monotonic())

    def _completed(self, submitted: _Submitted) -> dict[str, Any]:
        """Wait out the rest of the request's time for its answer, as a chat.completion."""
        request_id, job_id = submitted.request_id, submitted.job_id
        self.client.wait(job_id, timeout_s=max(submitted.left_s(), 0.0), max_poll_s=0.5)
        row = next(r for r in self.client.results(job_id) if r["id"] == request_id)
        if row["status"] in ("failed", "expired", "cancelled"):
            raise HttpError(502, f"request {request_id} {row['status']}: {row['error']}",
                            "upstream_error", row["status"])
        if row["status"] != "done":
            fetch = ("repeat with the same Idempotency-Key" if submitted.keyed
                     else f"`tierline results {job_id}`")
            raise HttpError(504, f"request {request_id} not answered within "
                            f"{submitted.waited_s:g} s; it is kept and will be answered: "
                            f"{fetch} fetches the answer", "timeout", "timeout")
        return self._completion(row, job_id)

    def _relayed(self, submitted: _Submitted, include_usage: bool) -> Iterator[dict[str, Any]]:
        """The answer's chunks as the tier worker relays its text, then its end."""
        head: dict[str, Any] = {"id": f"chatcmpl-{submitted.request_id}",
                                "object": "chat.completion.chunk", "created": int(time.time()),
                                "model": None}
        sent, replaced = "", False
        try:
            for piece in follow(self.client.rt, submitted.request_id, submitted.left_s()):
                head["model"] = piece.model
                yield _piece(head, piece.text, first=not sent)
                sent += piece.text
        except AnswerReplaced:
            replaced = True
        try:
            answer = self._completed(submitted)
        except HttpError as exc:
            yield exc.body
            return
        head["model"] = answer["model"]
        try:
            rest = rest_of(answer["choices"][0]["message"]["content"] or "", sent, replaced,
                           submitted.request_id)
        except AnswerReplaced as exc:
            yield {"error": {"message": f"{exc}. The whole answer is kept: repeat with the same "
                             "Idempotency-Key, or read it with `tierline results "
                             f"{submitted.job_id}`", "type": "upstream_error",
                             "code": "answer_replaced"}}
            return
        if rest or not sent:
            yield _piece(head, rest, first=not sent)
        yield from chunks(answer, include_usage)[1:]

    def _job_of(self, request_id: str) -> str:
        """The job that holds the request: a repeated key's request is in an earlier job."""
        return job_of(self.client.rt.engine, request_id)

    def _completion(self, row: dict[str, Any], job_id: str) -> dict[str, Any]:
        """OpenAI's chat.completion for a done request. ``usage`` counts the tokens of every
        attempt, i.e. what was billed (more than the answering call's after an escalation)."""
        tokens_in, tokens_out, created = usage_of(self.client.rt.engine, row["id"])
        return completion(row, job_id, created_at=created, tokens_in=tokens_in,
                          tokens_out=tokens_out)


@dataclass(frozen=True)
class _Submitted:
    """A request the gateway submitted, and how long it may wait for the answer."""

    request_id: str
    job_id: str
    keyed: bool  # it has an Idempotency-Key, so a repeat fetches the answer
    waited_s: float
    at: float  # time.monotonic() when submitted

    def left_s(self) -> float:
        return self.waited_s - (time.monotonic() - self.at)


def _piece(head: dict[str, Any], text: str, *, first: bool) -> dict[str, Any]:
    """A chunk that carries the next piece of the answer (the first one names the role)."""
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as OpenAI's ``chat.completion.chunk`` events: the whole answer in one
    chunk, then the finish reason (with the ``tierline`` object), then usage if asked."""
    head = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"}
    choice = completion["choices"][0]
    out = [head | {"choices": [{"index": 0, "delta": {"role": "assistant",
                                                      "content": choice["message"]["content"]},
                                "finish_reason": None}]},
           head | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
                   "tierline": completion["tierline"]}]
    if include_usage:
        out.append(head | {"choices": [], "usage": completion.get("usage")})
    return out


def _reject(_number: int, reason: str) -> None:
    raise InvalidInput(reason)
