"""The OpenAI-compatible HTTP gateway: chat completions through tierline's routing.

With a keys file (:mod:`tierline.gateway_keys`), every path but ``/healthz`` needs
``Authorization: Bearer <key>`` (401 otherwise), and the key names the request's tenant.
Without one, anyone who reaches the port is served, as tenant ``default``.

``POST /v1/chat/completions`` accepts one request, waits for its answer within the lane's
latency budget, and answers in OpenAI's shape plus a ``tierline`` object (request id, job
id, tier, USD, lane). The lane comes from the ``X-Tierline-Lane`` header (default
``realtime``); ``Idempotency-Key`` is the request's idempotency key, so a repeat returns the
earlier request's answer and does no new work. The body's ``model`` is not obeyed: tierline
picks the model, and the answer names it. Other OpenAI fields (``temperature``...) are
ignored. A request not answered in time gets 504 with its id; it stays in the database and
is still answered, so the same idempotency key fetches the answer later.

``"stream": true`` is answered as server-sent events in OpenAI's chunk shape. Under a
strategy that accepts the first answer (``kind: single``), the tier worker relays the text as
the model generates it (:mod:`workers.relay`) and each piece is sent on at once; under a
cascade or a panel the answer may still be replaced, so it comes in one chunk once it is
accepted. Errors found before the answer starts are ordinary JSON errors; later ones (the
answer failed, expired, or its call broke part-way and another model answered) are an
``error`` event, which OpenAI's SDKs raise.

``/v1/files`` and ``/v1/batches`` serve OpenAI's Files and Batch APIs for batch work
(uploads listed with ``GET /v1/files`` and deleted with ``DELETE /v1/files/{id}``; a batch
answered ``validating`` and read in the background); the logic is in :mod:`tierline.batches`,
:mod:`tierline.batch_intake` and :mod:`tierline.files`, this module only routes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select

from router.errors import InvalidInput
from router.policy import LANES
from tierline.batches import Batches
from tierline.client import Client
from tierline.files import MAX_FILE_BYTES, ORDERS, OUTPUT_PURPOSE, Download, parse_form
from tierline.gateway_keys import Keys
from tierline.openai_shapes import HttpError, bad, completion, request_fields, streaming
from tierline.streams import AnswerReplaced, follow
from workers.calls import relays
from workers.schema import attempts, requests

MAX_BODY_BYTES = 1 << 20
MAX_DISCARD_BYTES = 16 << 20
WAIT_MARGIN_S = 2.0
MAX_WAIT_S = 120.0  # an HTTP call should not hang for a batch lane's day-long budget
DEFAULT_LANE = "realtime"
DEFAULT_TENANT = "default"
JOB_NAME = "gateway"
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 100  # batches, as OpenAI pages them
DEFAULT_FILES_LIMIT = MAX_FILES_LIMIT = 10_000  # files, likewise


class Gateway:
    """The HTTP side of a :class:`Client`: turns OpenAI calls into tierline requests."""

    def __init__(self, client: Client, *, max_wait_s: float = MAX_WAIT_S,
                 keys: Keys | None = None) -> None:
        self.client = client
        self.max_wait_s = max_wait_s
        self.keys = keys
        self.batches = Batches(client)

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant a call is made for (None without keys); 401 for a missing or wrong key."""
        if self.keys is None:
            return None
        tenant = self.keys.tenant_of(authorization)
        if tenant is None:
            what = "a wrong API key" if authorization else "no API key"
            raise HttpError(401, f"{what}: send Authorization: Bearer <key> with a key from "
                            "the gateway's keys file", "invalid_request_error",
                            "invalid_api_key")
        return tenant

    def owner(self, authorization: str | None) -> str:
        """The tenant whose files and batches a call may see: ``default`` without keys."""
        return self.tenant(authorization) or DEFAULT_TENANT

    def models(self) -> dict[str, Any]:
        """The policy's models as OpenAI's model list."""
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "tierline"}
            for name in self.client.rt.policy.models]}

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
        text = answer["choices"][0]["message"]["content"] or ""
        head["model"] = answer["model"]
        if replaced or not text.startswith(sent):
            yield {"error": {"message": f"request {submitted.request_id}: a call failed "
                             "part-way through its answer and another model answered instead; "
                             "the text streamed so far is void. The whole answer is kept: "
                             "repeat with the same Idempotency-Key, or read it with `tierline "
                             f"results {submitted.job_id}`", "type": "upstream_error",
                             "code": "answer_replaced"}}
            return
        if text[len(sent):] or not sent:
            yield _piece(head, text[len(sent):], first=not sent)
        yield from chunks(answer, include_usage)[1:]

    def _job_of(self, request_id: str) -> str:
        """The job that holds the request: a repeated key's request is in an earlier job."""
        with self.client.rt.engine.connect() as conn:
            return str(conn.execute(select(requests.c.job_id)
                                    .where(requests.c.id == request_id)).scalar_one())

    def _completion(self, row: dict[str, Any], job_id: str) -> dict[str, Any]:
        """OpenAI's chat.completion for a done request. ``usage`` counts the tokens of every
        attempt, i.e. what was billed (more than the answering call's after an escalation)."""
        with self.client.rt.engine.connect() as conn:
            tokens_in, tokens_out, created = conn.execute(
                select(func.sum(attempts.c.tokens_in), func.sum(attempts.c.tokens_out),
                       func.min(requests.c.submitted_at))
                .select_from(requests.outerjoin(attempts,
                                                attempts.c.request_id == requests.c.id))
                .where(requests.c.id == row["id"])).one()
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


# (path pattern, methods): where a path exists but the method does not, the answer is 405
_PATHS = ((r"/healthz", "GET"), (r"/v1/models", "GET"), (r"/v1/chat/completions", "POST"),
          (r"/v1/files", "GET, POST"), (r"/v1/files/[^/]+", "GET, DELETE"),
          (r"/v1/files/[^/]+/content", "GET"),
          (r"/v1/batches", "GET, POST"), (r"/v1/batches/[^/]+", "GET"),
          (r"/v1/batches/[^/]+/cancel", "POST"))


class _Handler(BaseHTTPRequestHandler):
    """Routes the paths; every answer is JSON, a stream of JSON events, or a file."""

    gateway: Gateway  # set on the subclass that :func:`make_server` builds
    server_version = "tierline-gateway"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(lambda: self._get())

    def do_POST(self) -> None:  # noqa: N802
        self._answer(lambda: self._post())

    def do_DELETE(self) -> None:  # noqa: N802
        self._answer(lambda: self._delete())

    def _get(self) -> dict[str, Any] | Download:
        path = urlsplit(self.path).path
        if path == "/healthz":
            return {"ok": True}
        batches = self.gateway.batches
        if path == "/v1/models":
            self.gateway.tenant(self.headers.get("Authorization"))
            return self.gateway.models()
        if path == "/v1/files":
            query = self._query()
            limit, after = self._page(query, DEFAULT_FILES_LIMIT, MAX_FILES_LIMIT)
            purpose = _one(query, "purpose")
            if purpose == OUTPUT_PURPOSE:
                raise bad("purpose: batch_output files are not listed (they are written from "
                          "a batch's results when read); each batch names its own in "
                          "output_file_id and error_file_id", "invalid_purpose")
            return batches.files.list(self._owner(), purpose=purpose, limit=limit, after=after,
                                      order=_order(query))
        if path == "/v1/batches":
            return batches.list(self._owner(), *self._page(self._query(), DEFAULT_LIST_LIMIT,
                                                           MAX_LIST_LIMIT))
        if found := re.fullmatch(r"/v1/batches/([^/]+)", path):
            return batches.retrieve(self._owner(), found[1])
        if found := re.fullmatch(r"/v1/files/([^/]+)", path):
            return batches.file(self._owner(), found[1])
        if found := re.fullmatch(r"/v1/files/([^/]+)/content", path):
            return batches.content(self._owner(), found[1])
        raise self._not_allowed_or_missing("GET")

    def _post(self) -> dict[str, Any] | list[dict[str, Any]] | Iterator[dict[str, Any]]:
        path = urlsplit(self.path).path
        batches = self.gateway.batches
        if path == "/v1/files":
            data = self._body(MAX_FILE_BYTES)
            return batches.files.upload(self._owner(),
                                        parse_form(self.headers.get("Content-Type"), data))
        if path == "/v1/batches":
            data = self._body(MAX_BODY_BYTES)
            return batches.create(self._owner(), _json(data))
        if found := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
            return batches.cancel(self._owner(), found[1])
        if path != "/v1/chat/completions":
            raise self._not_allowed_or_missing("POST")
        data = self._body(MAX_BODY_BYTES)
        tenant = self.gateway.tenant(self.headers.get("Authorization"))
        body = _json(data)
        lane, key = self.headers.get("X-Tierline-Lane"), self.headers.get("Idempotency-Key")
        stream, options = streaming(body)
        if not stream:
            return self.gateway.complete(body, lane, key, tenant)
        return self.gateway.stream(body, lane, key, tenant,
                                   (options or {}).get("include_usage") is True)

    def _delete(self) -> dict[str, Any]:
        path = urlsplit(self.path).path
        if found := re.fullmatch(r"/v1/files/([^/]+)", path):
            return self.gateway.batches.delete_file(self._owner(), found[1])
        raise self._not_allowed_or_missing("DELETE")

    def _owner(self) -> str:
        return self.gateway.owner(self.headers.get("Authorization"))

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    @staticmethod
    def _page(query: dict[str, list[str]], default: int, maximum: int) -> tuple[int, str | None]:
        """A list call's ``limit`` (1 to ``maximum``) and ``after``."""
        limit = _one(query, "limit") or str(default)
        if not limit.isdigit() or not 1 <= int(limit) <= maximum:
            raise bad(f"limit: must be a whole number from 1 to {maximum}, got {limit!r}",
                      "invalid_limit")
        return int(limit), _one(query, "after")

    def _body(self, limit: int) -> bytes:
        """The request's body; 413 (having read and dropped it) when over ``limit`` bytes."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self._discard(length)
            raise HttpError(413, f"the body is {length} bytes; the limit is {limit}",
                            "invalid_request_error", "body_too_large")
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body, so the client sees the 413 instead of a reset
        connection; a huge one is not read at all and the connection closes."""
        self.close_connection = True
        if length <= MAX_DISCARD_BYTES:
            while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
                length -= len(chunk)

    def _not_allowed_or_missing(self, method: str) -> HttpError:
        path = urlsplit(self.path).path
        for pattern, methods in _PATHS:
            if re.fullmatch(pattern, path) and method not in methods.split(", "):
                return HttpError(405, f"{path} takes {methods}, not {method}",
                                 "invalid_request_error", "method_not_allowed")
        return HttpError(404, f"no such path {self.path!r}", "invalid_request_error",
                         "not_found")

    def _answer(self, handle: Any) -> None:
        try:
            status, body = 200, handle()
        except HttpError as exc:
            status, body = exc.status, exc.body
        except Exception as exc:  # the database or broker failed: say so, in OpenAI's shape
            logging.getLogger("tierline.gateway").exception("%s %s", self.command, self.path)
            status, body = 500, {"error": {"message": f"{type(exc).__name__}: {exc}",
                                           "type": "server_error", "code": "internal"}}
        if isinstance(body, Download):
            self._send_file(body)
            return
        if isinstance(body, Iterator):
            self._send_events(body)
            return
        if isinstance(body, list):  # a stream's events
            kind = "text/event-stream"
            data = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in body)
            data += b"data: [DONE]\n\n"
        else:
            kind, data = "application/json", json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, events: Iterator[dict[str, Any]]) -> None:
        """Server-sent events as they come; closing the connection ends them."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.close_connection = True
        self.end_headers()
        try:
            for event in events:
                self.wfile.write(b"data: %s\n\n" % json.dumps(event).encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left; the request is still answered and kept
        except Exception:
            logging.getLogger("tierline.gateway").exception("%s %s", self.command, self.path)

    def _send_file(self, download: Download) -> None:
        """Send a file as it is written; without a known length, closing the connection
        ends it (a failure midway leaves it short, and is logged)."""
        self.send_response(200)
        self.send_header("Content-Type", download.kind)
        if download.length is None:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(download.length))
        self.end_headers()
        try:
            for chunk in download.chunks:
                self.wfile.write(chunk)
        except Exception:
            self.close_connection = True
            logging.getLogger("tierline.gateway").exception("%s %s", self.command, self.path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # quiet: the ledger is the record


def _one(query: dict[str, list[str]], name: str) -> str | None:
    """A query parameter's value (the first, if repeated), or None."""
    values = query.get(name)
    return values[0] if values else None


def _order(query: dict[str, list[str]]) -> str:
    """A list's ``order``: ``desc`` (newest first, the default) or ``asc``."""
    order = _one(query, "order") or "desc"
    if order not in ORDERS:
        raise bad(f"order: must be \"asc\" or \"desc\", got {order!r}", "invalid_order")
    return order


def _json(data: bytes) -> Any:
    try:
        return json.loads(data or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"the body is not valid JSON: {exc}", "invalid_json") from exc


def _unsupported(self: _Handler) -> None:
    def fail() -> None:
        raise self._not_allowed_or_missing(self.command)

    self._answer(fail)


for _method in ("PUT", "PATCH", "OPTIONS"):
    setattr(_Handler, f"do_{_method}", _unsupported)


def make_server(client: Client, host: str = "127.0.0.1", port: int = 8080,
                **options: Any) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``client``, bound but not yet serving (port 0: any port)."""
    handler = type("GatewayHandler", (_Handler,), {"gateway": Gateway(client, **options)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
