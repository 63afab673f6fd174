"""The gateway's outer layer, an ASGI middleware that runs before any route reads a body.

In order: a request id; framing and header checks (``Transfer-Encoding`` with
``Content-Length``, a malformed ``Content-Length``, an over-long ``Idempotency-Key``: 400);
the API key (401) and the key's or tenant's limits (429) — all before a byte of the
body is read, so an unauthenticated 50 MB upload costs its headers only. An answer given
before the body was read closes the connection. Any exception a route lets out becomes a
500 that says "internal error" and the request id; the details go to the log. Every request
leaves one access-log line: method, path, status, duration, request id and tenant, never
the body.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from tierline.gateway.auth import Identity
from tierline.gateway.errors import HttpError, bad, error_body, internal, log
from tierline.gateway.limits import Limits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

access = logging.getLogger("tierline.gateway.access")
OPEN_PATHS = frozenset({"/healthz", "/metrics"})  # probes and scrapers carry no key


class Guard:
    """Checks a request's headers and key before the app sees it; see the module doc."""

    def __init__(self, app: App, limits: Limits,
                 identify: Callable[[str | None], Identity],
                 admit: Callable[[Identity], None],
                 known: Callable[[str | None], Identity | None] = lambda _: None,
                 limited: Callable[[Identity], bool] = lambda identity: identity.key is not None
                 ) -> None:
        self.app = app
        self.limits = limits
        self.identify = identify  # raises HttpError (401); may read the database
        self.known = known  # the identity when no read is needed, else None
        self.admit = admit  # raises HttpError (429) for a key or tenant over its limits
        self.limited = limited  # whether admit may refuse the caller (no I/O)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = f"req-{uuid.uuid4().hex[:16]}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        sent: dict[str, Any] = {"status": 0, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.limits.header_bytes:  # h11 bounds only headers still coming in
                raise HttpError(431, f"the headers are {size} bytes; the limit is "
                                f"{self.limits.header_bytes}", "invalid_request_error",
                                "headers_too_large")
            headers = _headers(scope)
            self._check(headers)
            if scope["path"] not in OPEN_PATHS:
                raw = headers.get(b"authorization")
                authorization = raw.decode("latin-1") if raw else None
                identity = self.known(authorization)
                if identity is None:
                    identity = await run_in_threadpool(self.identify, authorization)
                state["tenant"] = identity.tenant
                state["identity"] = identity
                if self.limited(identity):  # a database key's limits, or its tenant's
                    await run_in_threadpool(self.admit, identity)
            await self.app(scope, receive, send_with_id)
        except HttpError as exc:
            if not sent["started"]:
                await respond(send_with_id, exc, close=_has_body(scope))
        except Exception:
            log.exception("%s %s (request id %s)", scope["method"], scope["path"], request_id)
            if not sent["started"]:
                await respond(send_with_id, internal(request_id), close=True)
        finally:
            access.info("%s %s %s %.1fms %s tenant=%s", scope["method"], scope["path"],
                        sent["status"], (time.perf_counter() - started) * 1000, request_id,
                        state.get("tenant", "-"))

    def _check(self, headers: dict[bytes, bytes]) -> None:
        """400 for framing a proxy could read differently, and for over-long headers."""
        length = headers.get(b"content-length")
        if length is not None and b"transfer-encoding" in headers:
            raise bad("send either Transfer-Encoding or Content-Length, not both",
                      "invalid_framing")
        if length is not None and not length.strip().isdigit():
            raise bad("Content-Length: must be a whole number of bytes", "invalid_length")
        key = headers.get(b"idempotency-key")
        if key is not None and len(key) > self.limits.idempotency_key_chars:
            raise bad(f"Idempotency-Key: at most {self.limits.idempotency_key_chars} "
                      f"characters, got {len(key)}", "invalid_idempotency_key")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; a repeated Content-Length is refused."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name == b"content-length" and name in found and found[name] != value:
            raise bad("Content-Length: given twice with different values", "invalid_length")
        found[name] = value
    return found


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name.lower() == b"transfer-encoding" or (
                name.lower() == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


async def respond(send: Send, error: HttpError, *, close: bool,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """An error in OpenAI's shape; ``close`` ends the connection (a body left unread)."""
    body = error_body(error)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *(extra or []),
               *error.headers]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
