"""Serving the gateway with uvicorn (HTTP/1.1 keep-alive, h11) under :class:`Limits`.

uvicorn times out an idle kept-alive connection but not one that never finishes its
headers; :class:`_Protocol` closes a connection whose request line and headers are not in
within ``header_timeout_s``, whether it is new or kept alive. ``limit_concurrency`` answers
503 past ``connections``; h11 refuses headers over ``header_bytes`` and malformed framing
(``Content-Length: -1``) with a 400.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from tierline.gateway.guard import App
from tierline.gateway.limits import Limits

log = logging.getLogger("tierline.gateway")


class _Protocol(H11Protocol):
    """h11 with a deadline for each request's line and headers (see the module doc)."""

    header_timeout_s = 10.0  # set on the subclass that :func:`config` builds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # uvicorn writes a response's head and body apart: without this, Nagle holds the
            # body until the client's delayed ACK, 40 ms on every kept-alive call
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        cycle = self.cycle
        self.loop.call_later(self.header_timeout_s, self._headers_late, cycle)

    def _headers_late(self, cycle: Any) -> None:
        # still the cycle it was armed at: no new request's headers came in time
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


def config(app: App, limits: Limits, host: str, port: int) -> uvicorn.Config:
    protocol = type("GatewayProtocol", (_Protocol,),
                    {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(
        app, host=host, port=port, http=protocol, lifespan="off", access_log=False,
        timeout_keep_alive=limits.idle_timeout_s, limit_concurrency=limits.connections,
        backlog=limits.backlog, h11_max_incomplete_event_size=limits.header_bytes,
        log_level="warning", server_header=False)


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the port is known before serving."""
    sock = socket.create_server((host, port), backlog=backlog, reuse_port=False)
    sock.set_inheritable(True)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server with a bigger thread pool for the record's blocking calls."""

    def __init__(self, cfg: uvicorn.Config, threads: int) -> None:
        super().__init__(cfg)
        self.threads = threads

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
        await super().serve(sockets)


@contextmanager
def serving(app: App, limits: Limits, host: str = "127.0.0.1",
            port: int = 0) -> Iterator[str]:
    """The gateway served on a thread; yields its ``http://host:port`` (for tests, benches)."""
    sock = bind(host, port, limits.backlog)
    server = Server(config(app, limits, host, port), limits.threads)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="tierline-gateway")
    thread.start()
    try:
        while not server.started and thread.is_alive():
            threading.Event().wait(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
