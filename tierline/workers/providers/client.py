"""The one ``httpx.Client`` of a worker process: pooled, kept alive, HTTP/2 where the server
offers it, created lazily and re-created in a forked child."""

from __future__ import annotations

import logging
import os
import threading

import httpx

DEFAULT_MAX_CONNECTIONS = 256  # room for a few models at the policy's default concurrency (16)
KEEPALIVE_EXPIRY_S = 30.0

_lock = threading.Lock()
_client: httpx.Client | None = None
_client_pid: int | None = None


def _reset_lock_in_child() -> None:
    """A lock held by another thread at fork time would stay held forever in the child."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def new_client(*, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> httpx.Client:
    """A client with the worker's settings; the benchmark's raw loop uses the same."""
    # httpx logs every request at INFO, and workers run at INFO: a line per model call
    # (4 % of a tier worker's CPU at 32 realtime clients). Unless someone set its level.
    requests_log = logging.getLogger("httpx")
    if requests_log.level == logging.NOTSET:
        requests_log.setLevel(logging.WARNING)
    return httpx.Client(
        # HTTP/2 is negotiated by ALPN on https; plain-http endpoints stay on HTTP/1.1.
        http2=True,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        ),
        # Every call passes its own timeout from the latency budget; this is the fallback.
        timeout=httpx.Timeout(60.0),
        follow_redirects=False,
    )


def shared_client(*, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> httpx.Client:
    """This process's client; ``max_connections`` applies only to the call that creates it.

    Size it once at worker start to the sum of the models' ``max_concurrency``.
    """
    global _client, _client_pid
    pid = os.getpid()
    client = _client
    if client is not None and _client_pid == pid:
        return client
    with _lock:
        if _client is None or _client_pid != pid:
            # After fork the parent's sockets are shared with it: abandon them, never close
            # them from the child (closing could tear down the parent's TLS sessions).
            _client = new_client(max_connections=max_connections)
            _client_pid = pid
        return _client


def close_shared_client() -> None:
    """Close this process's client (worker shutdown); the next use creates a new one."""
    global _client, _client_pid
    with _lock:
        client, owner = _client, _client_pid
        _client, _client_pid = None, None
    if client is not None and owner == os.getpid():
        client.close()
