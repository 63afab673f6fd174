"""The simulator's HTTP server: routes, timing of replies, and a background-thread handle.

``start(fleet)`` binds a loopback port, serves on an asyncio loop in a daemon thread and
returns a SimServer (``.url``, ``.close()``, a context manager). One loop serves every
connection, so per-model state needs no locks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from types import TracebackType
from typing import Any

from tierline.sim import anthropic_api, openai_api
from tierline.sim.engine import Engine, SimError
from tierline.sim.fleet import Fleet
from tierline.sim.httpio import Reply, Request, serve_connection
from tierline.sim.replay import ReplayIndex
from tierline.sim.wire import Dialect, dumps

DIALECTS: dict[str, Dialect] = {
    "/v1/chat/completions": openai_api,
    "/chat/completions": openai_api,
    "/v1/messages": anthropic_api,
    "/messages": anthropic_api,
}


class App:
    """Answers requests for one Engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ids = itertools.count(1)

    async def __call__(self, request: Request, reply: Reply) -> None:
        """Route one request."""
        path = request.path.rstrip("/") or "/"
        dialect = DIALECTS.get(path)
        getter = {
            "/v1/models": self._models,
            "/models": self._models,
            "/health": self._health,
            "/sim/stats": self.engine.stats,
            "/sim/served-by-prompt": self.engine.served_prompts,
        }.get(path)
        if dialect is not None and request.method == "POST":
            await self._complete(dialect, request, reply)
        elif path == "/sim/burst" and request.method == "POST":
            self._burst(request, reply)
        elif getter is not None and request.method == "GET":
            reply.send(200, dumps(getter()))
        elif dialect is not None or getter is not None:
            reply.send(405, dumps({"error": {"message": f"{request.method} not allowed"}}))
        else:
            error = {"message": f"no route {request.path}", "type": "invalid_request_error"}
            reply.send(404, dumps({"error": error}))

    def _burst(self, request: Request, reply: Reply) -> None:
        """``{"seconds": S, "retry_after_s": R}``: every call gets 429 (Retry-After R) for S s."""
        try:
            body = json.loads(request.body or b"{}")
            seconds, retry_after_s = float(body["seconds"]), int(body["retry_after_s"])
            if not (0 < seconds <= 3600 and 1 <= retry_after_s <= 3600):
                raise ValueError("seconds in (0, 3600], retry_after_s in [1, 3600]")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            error = {"message": f"give {{\"seconds\", \"retry_after_s\"}}: {exc}",
                     "type": "invalid_request_error"}
            reply.send(400, dumps({"error": error}))
            return
        self.engine.rate_limit_burst(seconds, retry_after_s, asyncio.get_running_loop().time())
        reply.send(200, dumps({"seconds": seconds, "retry_after_s": retry_after_s}))

    def _models(self) -> dict[str, Any]:
        created = int(time.time())
        models = [
            {"id": n, "object": "model", "created": created, "owned_by": "tierline-sim"}
            for n in self.engine.model_names
        ]
        return {"object": "list", "data": models}

    def _health(self) -> dict[str, Any]:
        return {"status": "ok", "mode": self.engine.mode, "models": self.engine.model_names}

    async def _complete(self, dialect: Dialect, request: Request, reply: Reply) -> None:
        loop = asyncio.get_running_loop()
        try:
            chat = dialect.parse(request.body)
            c = self.engine.complete(chat, loop.time())
        except SimError as err:
            headers = []
            if err.retry_after_s is not None:
                headers = [
                    ("Retry-After", str(err.retry_after_s)),
                    ("retry-after-ms", str(err.retry_after_s * 1000)),
                ]
            reply.send(err.status, dumps(dialect.error(err)), headers)
            return
        rid = f"{dialect.ID_PREFIX}{next(self._ids):x}"
        created = int(time.time())
        if not chat.stream:
            delay = c.first_token_delay_s + c.per_token_s * c.completion_tokens
            if delay > 0:
                await asyncio.sleep(delay)
            reply.send(200, dumps(dialect.reply(c, rid, created)), list(c.headers))
            return
        if c.first_token_delay_s > 0:
            await asyncio.sleep(c.first_token_delay_s)
        reply.start_stream(dialect.stream_head(c, rid, created, chat), c.headers)
        first_at = loop.time()
        for i in range(len(c.pieces)):
            # pace tokens on a schedule; sleep only when ahead by more than 2 ms
            ahead = first_at + i * c.per_token_s - loop.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            await reply.chunk(dialect.stream_piece(c, rid, created, chat, i))
        await reply.end_stream(dialect.stream_tail(c, rid, created, chat))


class SimServer:
    """A running simulator: its URL, and close() to stop it (also a context manager)."""

    def __init__(self, engine: Engine, sock: socket.socket) -> None:
        self.engine = engine
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.port: int = port
        self._sock = sock
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tierline-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        app = App(self.engine)
        tasks: set[asyncio.Task[Any]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await serve_connection(reader, writer, app)
            except asyncio.CancelledError:
                pass  # close() cancels open connections; 3.11 streams would log it as an error
            finally:
                tasks.discard(task)

        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(
                on_connect, sock=self._sock, backlog=1024, limit=1024 * 1024
            )
        except BaseException as exc:  # surface bind/listen failures to the caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        """Stop serving, drop open connections and join the thread."""
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start(
    fleet: Fleet,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    replay: ReplayIndex | None = None,
    gold: dict[str, str] | None = None,
) -> SimServer:
    """Serve ``fleet`` (or replay a dataset with its profiles) on a background thread."""
    sock = socket.create_server((host, port), backlog=1024, reuse_port=False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return SimServer(Engine(fleet, replay=replay, gold=gold), sock)
    except BaseException:
        sock.close()
        raise
