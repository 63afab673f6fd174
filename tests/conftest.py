"""Shared fixtures: real Redis and Postgres, skipped locally when absent, failing under CI."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import drop_template, migrated_template

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TIERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
POSTGRES_ADMIN_URL = os.environ.get("TIERLINE_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


def data_dir() -> Path:
    """The shared data folder: $TIERLINE_DATA or ../shared/data beside the repository."""
    return Path(os.environ.get("TIERLINE_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _record_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded record of every test, and of the commands it runs, in its own folder."""
    monkeypatch.setenv("TIERLINE_HOME", str(tmp_path))


def publish_nowhere(lane: str, request_ids: list[str], *, retry: bool) -> None:
    """A producer's publisher with no worker behind it: the requests count as enqueued, and
    the test routes and answers them in its own thread."""


def broker_down(lane: str, request_ids: list[str], *, retry: bool) -> None:
    """A producer's publisher whose broker is unreachable: the requests stay accepted and
    never enqueued (the sweeper's to find)."""
    from kombu.exceptions import OperationalError

    raise OperationalError("no broker here")


def require_service(name: str, ok: bool, why: str) -> None:
    """Skip a test whose service is absent, unless under CI, where that is a failure."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required under CI: {why}")
    pytest.skip(f"{name} not available: {why}")


def redis_or_skip(url: str) -> Any:
    """A client of the Redis at ``url``: skipped when absent locally, a failure under CI."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no retries: a missing Redis should skip (or fail) at once, not after ~4 s of backoff
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.RedisError as exc:
        require_service("Redis", False, f"{url}: {exc}")
    return client


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", _reachable("127.0.0.1", 6379), "nothing on 127.0.0.1:6379")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # db 2 belongs to the test suite
    return REDIS_URL


def pytest_sessionfinish() -> None:
    drop_template(POSTGRES_ADMIN_URL)


@contextmanager
def _fresh_database() -> Iterator[str]:
    """A new database migrated to head (a copy of the session's template), dropped
    afterwards."""
    require_service("Postgres", _reachable("127.0.0.1", 5432), "nothing on 127.0.0.1:5432")
    import psycopg

    template = migrated_template(POSTGRES_ADMIN_URL)
    name = f"tierline_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database shared by the session's tests (and their worker processes)."""
    with _fresh_database() as url:
        yield url


@pytest.fixture()
def own_postgres_url() -> Iterator[str]:
    """A fresh database for one test, for tests that leave rows others must not see."""
    with _fresh_database() as url:
        yield url


@contextmanager
def serve_gateway(client: Any, **options: Any) -> Iterator[str]:
    """The HTTP gateway for ``client`` served by uvicorn on a free loopback port, in a
    thread; yields its ``.../v1`` base URL. ``limits`` and the app's options may be given."""
    from tierline.gateway import DEFAULT_LIMITS, make_app, serving

    limits = options.get("limits", DEFAULT_LIMITS)
    with serving(make_app(client, **options), limits) as url:
        yield f"{url}/v1"
