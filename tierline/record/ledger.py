"""The charge ledger's read side: totals grouped by model, tenant, job, lane or UTC day,
and the reconciliation of charges against attempts and results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from tierline.record.ahead import UNKNOWN, recorded
from tierline.record.schema import attempts, charges, pending_attempts, results

GROUPS = {"model": charges.c.model, "tenant": charges.c.tenant, "job": charges.c.job_id,
          "lane": charges.c.lane, "day": charges.c.day, "shadow": charges.c.shadow}


def day_label(day: int) -> str:
    """A UTC day number as an ISO date."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def rollup(conn: Connection, by: Sequence[str], *, since_s: float | None = None,
           until_s: float | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and USD per group, largest spend first; one SQL ``GROUP BY``."""
    columns = [GROUPS[name].label(name) for name in by]
    stmt = select(*columns, func.count().label("calls"),
                  func.sum(charges.c.tokens_in).label("tokens_in"),
                  func.sum(charges.c.tokens_out).label("tokens_out"),
                  func.sum(charges.c.usd).label("usd"),
                  func.sum(func.cast(charges.c.usage_estimated, type_=charges.c.tokens_in.type))
                  .label("estimated"))
    if since_s is not None:
        stmt = stmt.where(charges.c.charged_at >= since_s)
    if until_s is not None:
        stmt = stmt.where(charges.c.charged_at < until_s)
    if columns:
        stmt = stmt.group_by(*columns)
    rows = []
    for row in conn.execute(stmt):
        item = dict(row._mapping)
        if item["calls"] == 0:
            continue
        if "day" in item:
            item["day"] = day_label(item["day"])
        item["usd"] = Decimal(item["usd"])
        rows.append(item)
    return sorted(rows, key=lambda r: r["usd"], reverse=True)


@dataclass(frozen=True)
class Reconciliation:
    """The three totals that must agree: the ledger, the attempts, the results (plus the
    shadow calls, which are charged apart from any request's result)."""

    charges_usd: Decimal
    attempts_usd: Decimal
    results_usd: Decimal
    shadow_usd: Decimal = Decimal(0)  # of the attempts: the shadow calls' (workers.engine.shadow)
    shadow_charges_usd: Decimal = Decimal(0)  # of the charges: the shadow calls'

    @property
    def balanced(self) -> bool:
        return (self.charges_usd == self.attempts_usd == self.results_usd + self.shadow_usd
                and self.shadow_charges_usd == self.shadow_usd)


def reconcile(conn: Connection) -> Reconciliation:
    """Sum of charges, of attempt costs, and of per-request result costs."""
    def total(column: Any) -> Decimal:
        return Decimal(conn.execute(select(func.coalesce(func.sum(column), 0))).scalar_one())

    shadow = Decimal(conn.execute(select(func.coalesce(func.sum(attempts.c.usd), 0))
                                  .where(attempts.c.shadow)).scalar_one())
    shadow_charged = Decimal(conn.execute(select(func.coalesce(func.sum(charges.c.usd), 0))
                                          .where(charges.c.shadow)).scalar_one())
    return Reconciliation(total(charges.c.usd), total(attempts.c.usd), total(results.c.usd),
                          shadow, shadow_charged)


@dataclass(frozen=True)
class Unknowns:
    """Calls whose outcome was never recorded, charged at their reserved estimate, and calls
    written ahead and not yet recorded (in flight now, or of a task the watchdog has yet to
    see gone)."""

    calls: int
    usd: Decimal
    in_flight: int


def unknowns(conn: Connection) -> Unknowns:
    """The ledger's calls of unknown outcome (see tierline.record.ahead)."""
    calls, usd = conn.execute(select(func.count(), func.coalesce(func.sum(attempts.c.usd), 0))
                              .where(attempts.c.error.like(f"{UNKNOWN}:%"))).one()
    in_flight = conn.execute(select(func.count()).select_from(pending_attempts)
                             .where(~recorded())).scalar_one()
    return Unknowns(int(calls), Decimal(usd), int(in_flight))
