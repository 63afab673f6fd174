"""The OpenAI-compatible HTTP gateway: chat completions through tierline's routing.

With a keys file (:mod:`tierline.gateway_keys`), every path but ``/healthz`` needs
``Authorization: Bearer <key>`` (401 otherwise), and the key names the request's tenant.
Without one, anyone who reaches the port is served, as tenant ``default``.

``POST /v1/chat/completions`` accepts one request, waits for its answer within the lane's
latency budget (:mod:`tierline.chat`), and answers in OpenAI's shape plus a ``tierline``
object (request id, job id, tier, USD, lane). The lane comes from the ``X-Tierline-Lane``
header (default ``realtime``); ``Idempotency-Key`` is the request's idempotency key, so a
repeat returns the earlier request's answer and does no new work. The body's ``model`` is
not obeyed: tierline picks the model, and the answer names it. Other OpenAI fields
(``temperature``...) are ignored. A request not answered in time gets 504 with its id; it
stays in the database and is still answered, so the same idempotency key fetches the answer
later.

``"stream": true`` is answered as server-sent events in OpenAI's chunk shape, piece by piece
where the strategy accepts the first answer; the chat logic is in :mod:`tierline.chat`.

``/v1/files`` and ``/v1/batches`` serve OpenAI's Files and Batch APIs for batch work
(uploads listed with ``GET /v1/files`` and deleted with ``DELETE /v1/files/{id}``; a batch
answered ``validating`` and read in the background); the logic is in :mod:`tierline.batches`,
:mod:`tierline.batch_intake` and :mod:`tierline.files`, this module only routes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tierline.batches import Batches
from tierline.chat import MAX_WAIT_S, Chat
from tierline.client import Client
from tierline.files import MAX_FILE_BYTES, ORDERS, OUTPUT_PURPOSE, Download, parse_form
from tierline.gateway_keys import Keys
from tierline.openai_shapes import HttpError, bad, streaming

MAX_BODY_BYTES = 1 << 20
MAX_DISCARD_BYTES = 16 << 20
DEFAULT_TENANT = "default"
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 100  # batches, as OpenAI pages them
DEFAULT_FILES_LIMIT = MAX_FILES_LIMIT = 10_000  # files, likewise


class Gateway:
    """The HTTP side of a :class:`Client`: turns OpenAI calls into tierline requests."""

    def __init__(self, client: Client, *, max_wait_s: float = MAX_WAIT_S,
                 keys: Keys | None = None) -> None:
        self.client = client
        self.chat = Chat(client, max_wait_s)
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
            return self.gateway.chat.complete(body, lane, key, tenant)
        return self.gateway.chat.stream(body, lane, key, tenant,
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
