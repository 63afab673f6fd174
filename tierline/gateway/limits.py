"""Every limit the gateway enforces, in one frozen object passed to the app and the server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What a client may send and how long it may take; the server and the app read these.

    ``body_bytes`` bounds a JSON body (chat, batch creation), ``upload_bytes`` a file upload.
    ``header_bytes`` bounds the request line and headers together (h11's incomplete-event
    size); ``header_timeout_s`` is how long a connection may take to send them, and
    ``read_timeout_s`` how long the body may pause between two pieces. ``idle_timeout_s``
    closes a kept-alive connection with no new request. ``connections`` caps open
    connections and running requests (503 past it); ``backlog`` is the listen queue. A
    revoked key is refused within ``key_cache_s``; a budget may be overshot by what a
    tenant spends in ``spent_cache_s``.
    """

    body_bytes: int = 1 << 20
    upload_bytes: int = 100 << 20
    header_bytes: int = 16 << 10
    idempotency_key_chars: int = 255
    header_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    idle_timeout_s: int = 5
    connections: int = 1024
    backlog: int = 2048
    threads: int = 64  # threads for the blocking record and broker calls
    database_connections: int = 16  # kept open for chat calls (Postgres)
    key_cache_s: float = 10.0  # how long a database key is trusted before it is read again
    spent_cache_s: float = 5.0  # how long a tenant's spending is reused for its budget


DEFAULT_LIMITS = Limits()
