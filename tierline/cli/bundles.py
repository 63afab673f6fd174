"""`tierline router bundles list | promote ID | rollback`: the versioned bundles in the record."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tierline.router.errors import InvalidInput

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _engine() -> Any:
    from tierline.config.settings import settings_in_force
    from tierline.record.db import engine_for, upgrade

    url = settings_in_force().database_url
    upgrade(url)
    return engine_for(url)


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run(step: Callable[[], None]) -> None:
    try:
        step()
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)


@click.group("bundles")
def command() -> None:
    """Trained routing bundles, versioned in the database."""


@command.command("list")
def list_command() -> None:
    """Every bundle, newest first, with its status and validation figures."""
    from tierline.record.bundles import listed

    with _engine().connect() as conn:
        rows = listed(conn)
    table = Table(title="routing bundles (newest first)")
    for col in ("id", "status", "created", "promoted", "label", "metrics", "path"):
        table.add_column(col)
    for r in rows:
        metrics = ", ".join(f"{k} {v}" for k, v in r["metrics"].items())
        table.add_row(r["id"], r["status"], _when(r["created_at"]), _when(r["promoted_at"]),
                      r["label"], metrics, r["path"])
    out.print(table if rows else "no bundles yet (tierline router train --from-traffic "
                                 "--record)")


@command.command("promote")
@click.argument("bundle_id")
def promote_command(bundle_id: str) -> None:
    """Promote BUNDLE_ID; the bundle promoted until now is retired."""
    from tierline.record.bundles import promote_bundle

    def step() -> None:
        with _engine().begin() as conn:
            promote_bundle(conn, bundle_id, time.time())
        out.print(f"promoted {bundle_id}", highlight=False)

    _run(step)


@command.command("rollback")
def rollback_command() -> None:
    """Retire the promoted bundle and promote the one promoted before it."""
    from tierline.record.bundles import rollback

    def step() -> None:
        with _engine().begin() as conn:
            before = rollback(conn, time.time())
        out.print(f"rolled back to {before['id']} ({before['label']}, {before['path']})",
                  highlight=False)

    _run(step)
