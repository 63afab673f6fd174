"""``tierline charges``: the ledger as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tierline.record import api_keys
from tierline.record.ledger import reconcile, rollup, unknowns
from tierline.router.errors import InvalidInput
from tierline.workers.runtime import runtime


def parse_time(text: str | None, option: str) -> float | None:
    """An ISO date or datetime, read as UTC, in UNIX seconds."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {text!r} is not an ISO date or time (2026-11-28)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def show_charges(*, since: str | None, until: str | None, by: Sequence[str], fmt: str,
                 out_path: Path | None, console: Console) -> None:
    """Print or write the rollup; a table also shows whether the ledger reconciles."""
    rt = runtime()
    with rt.engine.connect() as conn:
        rows = rollup(conn, by, since_s=parse_time(since, "--since"),
                      until_s=parse_time(until, "--until"))
        balance = reconcile(conn)
        unknown = unknowns(conn)
    columns = [*by, "calls", "tokens_in", "tokens_out", "estimated", "usd"]
    if fmt == "table":
        table = Table(title="charges (UTC days)")
        for name in columns:
            table.add_column(name, justify="left" if name in by else "right")
        for row in rows:
            table.add_row(*(f"{row[c]:.6f}" if c == "usd" else str(row[c]) for c in columns))
        console.print(table)
        state = "balanced" if balance.balanced else "[red]NOT balanced[/red]"
        console.print(f"ledger ${balance.charges_usd:.6f}, attempts ${balance.attempts_usd:.6f}, "
                      f"results ${balance.results_usd:.6f}"
                      + (f" + shadow calls ${balance.shadow_usd:.6f}" if balance.shadow_usd
                         else "") + f": {state}")
        if unknown.calls or unknown.in_flight:
            console.print(f"of which {unknown.calls} calls of unknown outcome (the worker stopped "
                          f"after calling), charged at their reserved estimate: "
                          f"${unknown.usd:.6f}; {unknown.in_flight} calls written ahead and not "
                          "yet recorded")
        if "tenant" in by and api_keys.all_tenant_limits(rt.engine):
            from tierline.cli.keys_admin import show_limits  # it reads parse_time from here

            console.print("tenants' own limits (`tierline keys limit`) and what they spent:")
            show_limits(rt, console)
        return
    if fmt == "json":
        text = json.dumps([{**r, "usd": str(r["usd"])} for r in rows], indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if out_path:
        out_path.write_text(text, encoding="utf-8")
    else:
        console.file.write(text)
