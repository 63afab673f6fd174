"""``tierline keys``: create, list and revoke the gateway's API keys (kept as SHA-256 only),
and set and list tenants' own limits."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from decimal import Decimal

from rich.console import Console

from tierline.cli.charges import parse_time
from tierline.record import api_keys
from tierline.router.errors import InvalidInput
from tierline.workers.runtime import Runtime

DAY_S = 86_400
_DAYS = re.compile(r"(\d+)d")


def expiry(text: str | None, now_s: float) -> float | None:
    """``--expires``: a number of days (``30d``) or an ISO date or time (UTC)."""
    if text is None:
        return None
    if days := _DAYS.fullmatch(text.strip()):
        return now_s + int(days[1]) * DAY_S
    at = parse_time(text, "--expires")
    if at is not None and at <= now_s:
        raise InvalidInput(f"--expires: {text!r} is in the past")
    return at


def create(rt: Runtime, console: Console, *, tenant: str, name: str | None,
           expires: str | None, requests_per_minute: int | None,
           usd_per_day: Decimal | None, usd_per_month: Decimal | None) -> None:
    if not tenant.strip() or len(tenant) > 128:
        raise InvalidInput("--tenant: give a name of 1 to 128 characters")
    now = time.time()
    key, record = api_keys.create_key(
        rt.engine, tenant, name=name, expires_at=expiry(expires, now),
        requests_per_minute=requests_per_minute, usd_per_day=usd_per_day,
        usd_per_month=usd_per_month, now_s=now)
    console.print(key, highlight=False)
    console.print(f"[dim]key {record.id} for tenant {tenant}: shown once, only its SHA-256 is "
                  "kept[/dim]", highlight=False)


def show(rt: Runtime, console: Console, tenant: str | None) -> None:
    """Each key with its limits and what its tenant spent today and in the last 30 days."""
    rows = [("id", "tenant", "name", "state", "expires", "req/min", "usd/day", "usd/30d",
             "spent_today", "spent_30d")]
    now = time.time()
    day = now // DAY_S * DAY_S
    for key in api_keys.list_keys(rt.engine, tenant):
        state = ("revoked" if key.revoked_at else "expired" if not key.usable(now)
                 else "active")
        rows.append((key.id, key.tenant, key.name or "-", state, _when(key.expires_at),
                     _opt(key.requests_per_minute), _opt(key.usd_per_day),
                     _opt(key.usd_per_month),
                     f"{api_keys.spent_usd(rt.engine, key.tenant, day):.6f}",
                     f"{api_keys.spent_usd(rt.engine, key.tenant, day - 29 * DAY_S):.6f}"))
    _columns(console, rows)


def _columns(console: Console, rows: Sequence[tuple[str, ...]]) -> None:
    """Plain columns, whole at any width, for people and scripts alike."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        console.print("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip(),
                      highlight=False, markup=False)


def limit(rt: Runtime, console: Console, *, tenant: str, requests_per_minute: int | None,
          usd_per_day: Decimal | None, usd_per_month: Decimal | None) -> None:
    if not tenant.strip() or len(tenant) > 128:
        raise InvalidInput("--tenant: give a name of 1 to 128 characters")
    api_keys.set_tenant_limits(rt.engine, api_keys.TenantLimits(
        tenant, requests_per_minute, usd_per_day, usd_per_month))
    given = [f"{what} {value}" for what, value in (("req/min", requests_per_minute),
                                                   ("usd/day", usd_per_day),
                                                   ("usd/30d", usd_per_month))
             if value is not None]
    console.print(f"tenant {tenant}: {', '.join(given) if given else 'no limits'} "
                  "(gateways apply it within 5 s)", highlight=False)


def show_limits(rt: Runtime, console: Console) -> None:
    """Each limited tenant with what it spent today and in the last 30 days."""
    rows = [("tenant", "req/min", "usd/day", "usd/30d", "spent_today", "spent_30d")]
    day = time.time() // DAY_S * DAY_S
    for tenant, limits in api_keys.all_tenant_limits(rt.engine).items():
        rows.append((tenant, _opt(limits.requests_per_minute), _opt(limits.usd_per_day),
                     _opt(limits.usd_per_month),
                     f"{api_keys.spent_usd(rt.engine, tenant, day):.6f}",
                     f"{api_keys.spent_usd(rt.engine, tenant, day - 29 * DAY_S):.6f}"))
    _columns(console, rows)


def revoke(rt: Runtime, console: Console, key_id: str) -> None:
    if not api_keys.revoke_key(rt.engine, key_id):
        raise InvalidInput(f"no key {key_id!r}; `tierline keys list` shows them")
    console.print(f"key {key_id} revoked (gateways refuse it within 10 s)", highlight=False)


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def _when(at: float | None) -> str:
    return "-" if at is None else dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M")
