"""The gateway as an ASGI app: Starlette's router behind :class:`~tierline.gateway.guard.Guard`.

Each path answers the methods it takes; another method is 405 naming them, an unknown path
404, both in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from tierline.gateway import routes_chat, routes_files
from tierline.gateway.auth import Authenticator
from tierline.gateway.chat import MAX_WAIT_S, Chat
from tierline.gateway.context import Gateway
from tierline.gateway.errors import HttpError
from tierline.gateway.guard import App, Guard, Receive, Scope, Send
from tierline.gateway.keys_file import Keys
from tierline.gateway.limits import DEFAULT_LIMITS, Limits
from tierline.gateway.quota import Quota
from tierline.producer.batches import Batches
from tierline.producer.client import Client
from tierline.record import api_keys, realtime
from tierline.workers.stores.request_counter import MemoryCounter, RedisCounter, RequestCounter

Handler = Callable[[Request], Awaitable[Response]]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _path(path: str, **handlers: Handler) -> Route:
    """A route taking every method: the ones in ``handlers`` are served, the rest 405."""
    takes = ", ".join(handlers)

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:
            raise HttpError(405, f"{request.url.path} takes {takes}, not {request.method}",
                            "invalid_request_error", "method_not_allowed")
        return await handler(request)

    return Route(path, endpoint, methods=METHODS)


async def _metrics(request: Request) -> Response:
    """This process's counters in Prometheus' text format (tierline/metrics.py)."""
    from tierline.metrics import CONTENT_TYPE_LATEST, render

    return Response(await asyncio.to_thread(render), media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    _path("/healthz", GET=routes_chat.healthz),
    _path("/metrics", GET=_metrics),
    _path("/v1/models", GET=routes_chat.models),
    _path("/v1/chat/completions", POST=routes_chat.completions),
    _path("/v1/files", GET=routes_files.list_files, POST=routes_files.upload),
    _path("/v1/files/{file_id}", GET=routes_files.retrieve_file,
          DELETE=routes_files.delete_file),
    _path("/v1/files/{file_id}/content", GET=routes_files.file_content),
    _path("/v1/batches", GET=routes_files.list_batches, POST=routes_files.create_batch),
    _path("/v1/batches/{batch_id}", GET=routes_files.retrieve_batch),
    _path("/v1/batches/{batch_id}/cancel", POST=routes_files.cancel_batch),
]


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise HttpError(404, f"no such path {scope['path']!r}", "invalid_request_error",
                    "not_found")


def _counter(client: Client) -> RequestCounter:
    """Where requests per key are counted: Redis when the stack has it, else memory."""
    url = client.rt.settings.redis_url
    if url is None:
        return MemoryCounter()
    import redis

    return RedisCounter(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))


def make_app(client: Client, *, keys: Keys | None = None, limits: Limits = DEFAULT_LIMITS,
             max_wait_s: float = MAX_WAIT_S) -> App:
    """The gateway's ASGI app for ``client``: YAML ``keys`` and the database's keys."""
    engine = client.rt.engine
    chat = Chat(client, max_wait_s, realtime.pooled(engine, limits.database_connections))
    gateway = Gateway(client, chat, Batches(client), limits)
    auth = Authenticator(keys, lookup=lambda hashed: api_keys.find_key(engine, hashed),
                         any_keys=lambda: api_keys.any_keys(engine), cache_s=limits.key_cache_s)
    quota = Quota(_counter(client), lambda tenant, since: api_keys.spent_usd(engine, tenant, since),
                  cache_s=limits.spent_cache_s,
                  tenant_limits=lambda: api_keys.all_tenant_limits(engine))
    router = Router(ROUTES, default=_not_found)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["gateway"] = gateway
        await router(scope, receive, send)

    return Guard(app, limits, auth.identify, quota.admit, auth.known, quota.limited)
