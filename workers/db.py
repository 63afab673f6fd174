"""Database engines (one per process and URL), idempotent inserts, and schema upgrades."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """The process's engine for ``url``; a forked worker child gets its own pool."""
    key = (os.getpid(), url)
    with _lock:
        if key not in _engines:
            _engines[key] = _create(url)
        return _engines[key]


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


def insert_ignore(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows, skipping any whose key already exists; returns how many were new.

    This is what makes redelivered tasks harmless: the same attempt, charge or result
    key written twice is written once.
    """
    rows = list(rows)
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only Postgres and SQLite are supported
        raise RuntimeError(f"unsupported database dialect {dialect}")
    return conn.execute(stmt, rows).rowcount or 0


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision`` with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["engine"] = engine_for(url)
    command.upgrade(config, revision)
