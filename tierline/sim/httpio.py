"""A small HTTP/1.1 server loop on asyncio streams: keep-alive, Content-Length and chunked.

Just enough HTTP for JSON APIs and server-sent events; a handler gets a parsed Request
and a Reply to write a whole JSON body or a chunked stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

MAX_BODY_BYTES = 16 * 1024 * 1024
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP request we can read."""


@dataclass
class Request:
    """One parsed request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class Reply:
    """Writes one response to a connection, whole or as chunks."""

    def __init__(self, writer: asyncio.StreamWriter, keep_alive: bool) -> None:
        self.writer = writer
        self.keep_alive = keep_alive

    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", "Server: tierline-sim"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not self.keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Write a whole response (the caller drains)."""
        head = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        self.writer.write(self._head(status, head + (headers or [])) + body)

    def start_stream(self, first: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Write a 200 chunked event-stream head, ``headers`` and the first chunk."""
        head = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            *headers,
        ]
        self.writer.write(self._head(200, head) + _chunk(first))

    async def chunk(self, data: bytes) -> None:
        """Write one chunk and wait for the socket to take it."""
        self.writer.write(_chunk(data))
        await self.writer.drain()

    async def end_stream(self, last: bytes) -> None:
        """Write the last data chunk and the terminating zero chunk."""
        self.writer.write(_chunk(last) + b"0\r\n\r\n")
        await self.writer.drain()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]
    length = int(headers.get("content-length", "0") or 0)
    if length < 0 or length > MAX_BODY_BYTES:
        raise BadRequest(f"body of {length} bytes is not accepted")
    return await reader.readexactly(length) if length else b""


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> Request | None:
    """The next request on a connection, or None when the client closed it; answers
    ``Expect: 100-continue`` (curl sends it for bodies over 1 KiB) through ``writer``."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed mid-request") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = raw.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if writer is not None and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await _read_body(reader, headers)
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise BadRequest(f"malformed request ({exc})") from exc
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return Request(method, target.split("?", 1)[0], headers, body, keep_alive)


Handler = Callable[[Request, Reply], Awaitable[None]]


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Serve requests on one connection until the client or a handler closes it."""
    try:
        while True:
            try:
                request = await read_request(reader, writer)
            except BadRequest as exc:
                reply = Reply(writer, keep_alive=False)
                reply.send(400, json.dumps({"error": {"message": str(exc)}}).encode())
                await writer.drain()
                return
            if request is None:
                return
            reply = Reply(writer, request.keep_alive)
            await handler(request, reply)
            await writer.drain()
            if not request.keep_alive:
                return
    except ConnectionError:
        pass
    finally:
        writer.close()
