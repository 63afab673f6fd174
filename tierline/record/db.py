"""Database engines (one per process and URL), idempotent inserts, and schema upgrades."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Engine,
    Float,
    Integer,
    Numeric,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

JOBS_CHANNEL = "tierline_jobs"  # LISTEN/NOTIFY channel; the payload is a job id

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
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(*_unnest_insert(table, rows, None))
        return result.rowcount or 0
    return conn.execute(_on_conflict_do_nothing(conn, table), rows).rowcount or 0


def insert_ignore_together(conn: Connection,
                           inserts: Sequence[tuple[Table, Iterable[Mapping[str, Any]]]]
                           ) -> list[int]:
    """:func:`insert_ignore` into several tables, in order; returns how many rows were new in
    each. On Postgres one statement for all of them (one round trip and one parse, where a
    bundle's attempts, charges and results took three); their foreign keys are checked at its
    end, when every row is there."""
    writes = [(table, list(rows)) for table, rows in inserts]
    if conn.dialect.name != "postgresql":
        return [insert_ignore(conn, table, rows) for table, rows in writes]
    ctes: list[str] = []
    params: list[Any] = []
    counts: list[str] = []
    for i, (table, rows) in enumerate(writes):
        if not rows:
            counts.append("0")
            continue
        sql, columns = _unnest_insert(table, rows, None)
        ctes.append(f"w{i} AS ({sql} RETURNING 1)")
        params.extend(columns)
        counts.append(f"(SELECT count(*) FROM w{i})")
    if not ctes:
        return [0] * len(writes)
    found = conn.exec_driver_sql(f"WITH {', '.join(ctes)} SELECT {', '.join(counts)}",
                                 tuple(params)).one()
    return [int(n) for n in found]


def insert_new(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]],
               key: str) -> list[Any]:
    """Insert rows as :func:`insert_ignore` does; returns ``key`` of each row that was new."""
    rows = list(rows)
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        return [row[0] for row in conn.exec_driver_sql(*_unnest_insert(table, rows, key))]
    stmt = _on_conflict_do_nothing(conn, table).returning(table.c[key])
    return [row[0] for row in conn.execute(stmt, rows)]


def among(conn: Connection, column: ColumnElement[Any], values: Iterable[Any]
          ) -> ColumnElement[bool]:
    """``column IN values`` as one array parameter on Postgres (``= ANY(%s)``).

    SQLAlchemy expands ``in_`` into one parameter per value, so a chunk of a thousand ids
    makes a statement too long for psycopg's parse cache, re-parsed on every call.
    """
    values = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def notify_jobs(conn: Connection, job_ids: Iterable[str | None]) -> None:
    """Tell producers waiting on these jobs (``Client.wait``) that some of their requests ended.

    On Postgres, one ``pg_notify`` per distinct job inside the caller's transaction, so it
    is delivered when the transaction commits and never for a rollback (and a job named
    twice in one transaction is delivered once). SQLite has no notifications: waiters poll.
    """
    if conn.dialect.name != "postgresql":
        return
    ids = sorted({job_id for job_id in job_ids if job_id})
    if ids:
        conn.exec_driver_sql("SELECT pg_notify(%s, job_id) FROM unnest(%s::text[]) AS job_id",
                             (JOBS_CHANNEL, ids))


def _on_conflict_do_nothing(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database dialect {conn.dialect.name}")  # pragma: no cover


def _unnest_insert(table: Table, rows: list[Mapping[str, Any]], returning: str | None
                   ) -> tuple[str, tuple[Any, ...]]:
    """One ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` for all rows.

    One array parameter per column, so the statement text is the same whatever the row
    count: psycopg parses it once and the server runs it once. (SQLAlchemy's executemany
    without RETURNING runs one INSERT per row on psycopg 3, and its multi-row VALUES form
    spends most of its time in psycopg re-parsing a statement too long to cache.)
    """
    names = tuple(rows[0])
    sql, converters = _unnest_statement(table, names, returning)
    return sql, tuple([None if (v := row[name]) is None else convert(v) for row in rows]
                      for name, convert in zip(names, converters, strict=True))


@lru_cache(maxsize=256)
def _unnest_statement(table: Table, names: tuple[str, ...], returning: str | None
                      ) -> tuple[str, tuple[Any, ...]]:
    """:func:`_unnest_insert`'s text and each column's converter, built once per shape."""
    casts, converters = [], []
    for name in names:
        kind, convert = _array_type(table.c[name].type)
        casts.append(f"%b::{kind}[]")  # binary: psycopg's text array dumper is pure Python
        converters.append(convert)
    quoted = ", ".join(f'"{n}"' for n in names)
    sql = (f'INSERT INTO "{table.name}" ({quoted}) SELECT * FROM unnest({", ".join(casts)}) '
           "ON CONFLICT DO NOTHING")
    if returning:
        sql += f' RETURNING "{returning}"'
    return sql, tuple(converters)


def _array_type(sql_type: Any) -> tuple[str, Any]:
    """The Postgres element type to cast to, and how to coerce a Python value to it."""
    if isinstance(sql_type, JSON):
        return "json", json.dumps
    if isinstance(sql_type, Boolean):
        return "boolean", bool
    if isinstance(sql_type, Integer):
        return "bigint", int
    if isinstance(sql_type, Numeric) and not isinstance(sql_type, Float):
        return "numeric", Decimal
    if isinstance(sql_type, Float):
        return "float8", float
    return "text", str


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision`` with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    from tierline.record import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["engine"] = engine_for(url)
    command.upgrade(config, revision)
