"""The gateway's API keys in the record: create (keeping only the key's SHA-256), find,
list, revoke; a tenant's own limits; and what a tenant has spent since a moment, for its
budget."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, delete, func, insert, select, update

from tierline.record.schema import api_keys, charges, tenant_limits

KEY_PREFIX = "tl-"


@dataclass(frozen=True)
class KeyRecord:
    """A stored key (never the key itself): its tenant, validity and limits."""

    id: str
    tenant: str
    name: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    requests_per_minute: int | None
    usd_per_day: Decimal | None
    usd_per_month: Decimal | None

    def usable(self, now_s: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now_s < self.expires_at)


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, tenant: str, *, name: str | None = None,
               expires_at: float | None = None, requests_per_minute: int | None = None,
               usd_per_day: Decimal | None = None, usd_per_month: Decimal | None = None,
               now_s: float | None = None) -> tuple[str, KeyRecord]:
    """A new random key (returned once, never stored) and its record."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = KeyRecord(f"key-{uuid.uuid4().hex[:16]}", tenant, name,
                       time.time() if now_s is None else now_s, expires_at, None,
                       requests_per_minute, usd_per_day, usd_per_month)
    with engine.begin() as conn:
        conn.execute(insert(api_keys).values(key_sha256=sha256(key), **vars(record)))
    return key, record


def find_key(engine: Engine, key_sha256: str) -> KeyRecord | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(api_keys.c.key_sha256 == key_sha256)).first()
    return KeyRecord(**row._mapping) if row else None


def any_keys(engine: Engine) -> bool:
    """Whether any key was ever created (then the gateway asks every caller for one)."""
    with engine.connect() as conn:
        return conn.execute(select(api_keys.c.id).limit(1)).first() is not None


def list_keys(engine: Engine, tenant: str | None = None) -> list[KeyRecord]:
    stmt = select(*_COLUMNS).order_by(api_keys.c.tenant, api_keys.c.created_at)
    if tenant is not None:
        stmt = stmt.where(api_keys.c.tenant == tenant)
    with engine.connect() as conn:
        return [KeyRecord(**row._mapping) for row in conn.execute(stmt)]


def revoke_key(engine: Engine, key_id: str, now_s: float | None = None) -> bool:
    """Revoke a key; False when there is no such key (revoking twice keeps the first time)."""
    with engine.begin() as conn:
        found = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
        conn.execute(update(api_keys).where(api_keys.c.id == key_id,
                                            api_keys.c.revoked_at.is_(None))
                     .values(revoked_at=time.time() if now_s is None else now_s))
    return found is not None


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's limits across all its keys (None: no such limit)."""

    tenant: str
    requests_per_minute: int | None
    usd_per_day: Decimal | None
    usd_per_month: Decimal | None


def set_tenant_limits(engine: Engine, limits: TenantLimits, now_s: float | None = None) -> None:
    """Give a tenant these limits, replacing its earlier ones; with none set, it has none."""
    with engine.begin() as conn:
        conn.execute(delete(tenant_limits).where(tenant_limits.c.tenant == limits.tenant))
        if any(v is not None for v in (limits.requests_per_minute, limits.usd_per_day,
                                       limits.usd_per_month)):
            conn.execute(insert(tenant_limits).values(
                **vars(limits), updated_at=time.time() if now_s is None else now_s))


def all_tenant_limits(engine: Engine) -> dict[str, TenantLimits]:
    """Every tenant's limits, by tenant (a row per limited tenant: a gateway reads them all)."""
    with engine.connect() as conn:
        return {row.tenant: TenantLimits(row.tenant, row.requests_per_minute, row.usd_per_day,
                                         row.usd_per_month)
                for row in conn.execute(select(
                    tenant_limits.c.tenant, tenant_limits.c.requests_per_minute,
                    tenant_limits.c.usd_per_day, tenant_limits.c.usd_per_month)
                    .order_by(tenant_limits.c.tenant))}


def spent_usd(engine: Engine, tenant: str, since_s: float) -> Decimal:
    """What ``tenant`` was charged from ``since_s`` on (the ledger, every lane)."""
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(charges.c.usd)).where(
            charges.c.tenant == tenant, charges.c.charged_at >= since_s)).scalar()
    return Decimal(total or 0)


_COLUMNS = (api_keys.c.id, api_keys.c.tenant, api_keys.c.name, api_keys.c.created_at,
            api_keys.c.expires_at, api_keys.c.revoked_at, api_keys.c.requests_per_minute,
            api_keys.c.usd_per_day, api_keys.c.usd_per_month)
