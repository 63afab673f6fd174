"""``tierline keys``: the gateway's API keys, made, listed and revoked in the record."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import click

from tierline.cli.console import out


def _session() -> AbstractContextManager[Any]:
    from tierline.cli.session import session
    from tierline.config.settings import settings_in_force

    return session(settings_in_force())


def _rt(rt: Any) -> Any:
    """The runtime the keys are kept through: the embedded stack's, else the process's."""
    from tierline.cli.session import client_for
    from tierline.config.settings import settings_in_force

    return client_for(settings_in_force(), rt).rt


@click.group()
def keys() -> None:
    """The gateway's API keys: each speaks for a tenant, with optional limits; and each
    tenant's own limits, across its keys."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key's requests are made for.")
@click.option("--name", default=None, help="A name to recognise the key by.")
@click.option("--expires", default=None, help="Days (30d) or a UTC date or time (ISO 8601).")
@click.option("--rpm", "requests_per_minute", type=click.IntRange(min=1), default=None,
              help="Requests per minute (429 with Retry-After past it).")
@click.option("--usd-per-day", type=click.FloatRange(min=0), default=None,
              help="USD the tenant may spend per UTC day (429 once spent).")
@click.option("--usd-per-month", type=click.FloatRange(min=0), default=None,
              help="USD the tenant may spend per 30 days (429 once spent).")
def keys_create(tenant: str, name: str | None, expires: str | None,
                requests_per_minute: int | None, usd_per_day: float | None,
                usd_per_month: float | None) -> None:
    """Make a key and print it once; only its SHA-256 is kept."""
    from decimal import Decimal

    from tierline.cli import keys_admin

    with _session() as rt:
        keys_admin.create(_rt(rt), out, tenant=tenant, name=name, expires=expires,
                          requests_per_minute=requests_per_minute,
                          usd_per_day=None if usd_per_day is None else Decimal(str(usd_per_day)),
                          usd_per_month=(None if usd_per_month is None
                                         else Decimal(str(usd_per_month))))


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """Every key (never the key itself): tenant, state, limits, what its tenant spent."""
    from tierline.cli import keys_admin

    with _session() as rt:
        keys_admin.show(_rt(rt), out, tenant)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (as `tierline keys list` shows it)."""
    from tierline.cli import keys_admin

    with _session() as rt:
        keys_admin.revoke(_rt(rt), out, key_id)


@keys.command("limit")
@click.option("--tenant", required=True, help="The tenant whose requests are limited.")
@click.option("--rpm", "requests_per_minute", type=click.IntRange(min=1), default=None,
              help="Requests per minute across its keys (429 with Retry-After past it).")
@click.option("--usd-per-day", type=click.FloatRange(min=0), default=None,
              help="USD the tenant may spend per UTC day (429 once spent).")
@click.option("--usd-per-month", type=click.FloatRange(min=0), default=None,
              help="USD the tenant may spend per 30 days (429 once spent).")
def keys_limit(tenant: str, requests_per_minute: int | None, usd_per_day: float | None,
               usd_per_month: float | None) -> None:
    """Set a tenant's own limits, across all its keys (the keys file's too), replacing its
    earlier ones; with no limit given, it has none."""
    from decimal import Decimal

    from tierline.cli import keys_admin

    with _session() as rt:
        keys_admin.limit(_rt(rt), out, tenant=tenant, requests_per_minute=requests_per_minute,
                         usd_per_day=None if usd_per_day is None else Decimal(str(usd_per_day)),
                         usd_per_month=(None if usd_per_month is None
                                        else Decimal(str(usd_per_month))))


@keys.command("limits")
def keys_limits() -> None:
    """Each limited tenant: its limits and what it spent today and in the last 30 days."""
    from tierline.cli import keys_admin

    with _session() as rt:
        keys_admin.show_limits(_rt(rt), out)
