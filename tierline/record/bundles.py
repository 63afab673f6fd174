"""Versioned routing bundles in the record: register, list, promote, roll back.

At most one bundle is ``promoted`` (the one the policy should route with). Promoting
another retires it; a rollback retires the promoted one and promotes again the newest
older bundle that was ever promoted, so repeated rollbacks walk back through the versions.
Errors are ``InvalidInput`` with the reason.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, select, update

from tierline.record.schema import bundles
from tierline.router.errors import InvalidInput


def register(conn: Connection, path: str, policy: dict[str, Any], label: str,
             metrics: dict[str, Any], now_s: float, promote: bool = False) -> str:
    """Record a trained bundle (as a candidate, or promoted at once); returns its id."""
    bundle_id = uuid.uuid4().hex[:12]
    conn.execute(bundles.insert().values(
        id=bundle_id, created_at=now_s, label=label, path=path, policy=policy, metrics=metrics,
        status="candidate"))
    if promote:
        promote_bundle(conn, bundle_id, now_s)
    return bundle_id


def listed(conn: Connection) -> list[dict[str, Any]]:
    """Every bundle, newest first."""
    rows = conn.execute(select(bundles).order_by(bundles.c.created_at.desc(), bundles.c.id))
    return [dict(r._mapping) for r in rows]


def promoted(conn: Connection) -> dict[str, Any] | None:
    """The promoted bundle, if any."""
    row = conn.execute(select(bundles).where(bundles.c.status == "promoted")).first()
    return None if row is None else dict(row._mapping)


def promote_bundle(conn: Connection, bundle_id: str, now_s: float) -> None:
    """Promote ``bundle_id``; the bundle promoted until now is retired."""
    if conn.execute(select(bundles.c.id).where(bundles.c.id == bundle_id)).first() is None:
        raise InvalidInput(f"no bundle {bundle_id!r} (tierline router bundles list)")
    conn.execute(update(bundles).where(bundles.c.status == "promoted",
                                       bundles.c.id != bundle_id)
                 .values(status="retired", retired_at=now_s))
    conn.execute(update(bundles).where(bundles.c.id == bundle_id)
                 .values(status="promoted", promoted_at=now_s, retired_at=None))


def rollback(conn: Connection, now_s: float) -> dict[str, Any]:
    """Retire the promoted bundle and promote the newest older one that was ever promoted;
    returns it."""
    current = promoted(conn)
    if current is None:
        raise InvalidInput("no bundle is promoted: nothing to roll back")
    before = conn.execute(
        select(bundles).where(bundles.c.id != current["id"], bundles.c.promoted_at.is_not(None),
                              bundles.c.created_at <= current["created_at"])
        .order_by(bundles.c.created_at.desc()).limit(1)).first()
    if before is None:
        raise InvalidInput(f"bundle {current['id']} is the first ever promoted: nothing to "
                           "roll back to")
    promote_bundle(conn, before.id, now_s)
    return dict(before._mapping)
