"""The record of uploaded files (the gateway's Files API): kept whole, so any host reads them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select

from tierline.record.schema import batches, files, jobs

LISTED = (files.c.id, files.c.purpose, files.c.filename, files.c.bytes, files.c.created_at)


def add(conn: Connection, row: dict[str, Any]) -> None:
    """Keep one upload (``row`` holds every column of ``files``)."""
    conn.execute(insert(files).values(**row))


def find(conn: Connection, tenant: str, file_id: str, purpose: str,
         *, with_content: bool = False) -> dict[str, Any] | None:
    """A file of ``tenant`` with that purpose, or None."""
    columns = [files.c.id, files.c.tenant, files.c.purpose, files.c.filename,
               files.c.bytes, files.c.created_at]
    if with_content:
        columns.append(files.c.content)
    row = conn.execute(select(*columns).where(
        files.c.id == file_id, files.c.tenant == tenant, files.c.purpose == purpose)).first()
    return None if row is None else dict(row._mapping)


def hold(conn: Connection, tenant: str, file_id: str, purpose: str) -> bool:
    """Whether ``tenant`` has the file; if so, it cannot be deleted until ``conn``'s
    transaction ends (a shared row lock)."""
    return conn.execute(select(files.c.id).where(
        files.c.id == file_id, files.c.tenant == tenant, files.c.purpose == purpose)
        .with_for_update(read=True)).first() is not None


def page(conn: Connection, tenant: str, *, purpose: str | None, limit: int,
         after: str | None, newest_first: bool) -> list[dict[str, Any]] | None:
    """Up to ``limit`` files of ``tenant`` by creation time after the file ``after``;
    None when ``after`` names none of the tenant's files."""
    when, ident = files.c.created_at, files.c.id
    stmt = (select(*LISTED).where(files.c.tenant == tenant)
            .order_by(*((when.desc(), ident.desc()) if newest_first else (when, ident)))
            .limit(limit))
    if purpose is not None:
        stmt = stmt.where(files.c.purpose == purpose)
    if after is not None:
        since = conn.execute(select(files.c.created_at).where(
            files.c.id == after, files.c.tenant == tenant)).scalar()
        if since is None:
            return None
        beyond = ((when < since, and_(when == since, ident < after)) if newest_first
                  else (when > since, and_(when == since, ident > after)))
        stmt = stmt.where(or_(*beyond))
    return [dict(row._mapping) for row in conn.execute(stmt)]


def lock(conn: Connection, tenant: str, file_id: str) -> bool:
    """Whether ``tenant`` has the file, locked for a delete until ``conn``'s transaction ends."""
    return conn.execute(select(files.c.id).where(
        files.c.id == file_id, files.c.tenant == tenant).with_for_update()).first() is not None


def reading_batch(conn: Connection, file_id: str) -> str | None:
    """The job id of a batch still reading the file (``validating``), if any."""
    reader = conn.execute(
        select(batches.c.job_id).join(jobs, jobs.c.id == batches.c.job_id)
        .where(batches.c.input_file_id == file_id, jobs.c.status == "validating")
        .limit(1)).scalar()
    return None if reader is None else str(reader)


def remove(conn: Connection, file_id: str) -> None:
    """Delete a file (call :func:`lock` first in the same transaction)."""
    conn.execute(delete(files).where(files.c.id == file_id))
