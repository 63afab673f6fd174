"""The daily report's shadow figures: what the shadow calls cost, how often each tier agreed
with the top tier on the shadowed requests, the quality that agreement estimates for the
answers given, and the saving against the top tier net of the shadow calls.

- **Shadow calls** are the charges marked ``shadow`` made in the period (by ``charged_at``).
- **Agreement per tier** counts the graded outcomes recorded in the period
  (``shadow_outcomes.recorded_at``) whose top tier answered: for each tier, the share of
  its answers that are the top tier's answer (the top tier itself is 1 by definition).
- **Estimated quality against the top tier** is the share of the shadowed requests whose
  given answer (``shadow`` false) agrees with the top tier's: an estimate, from the sample,
  of how often the routing in force answers as the top tier would.
- **Net saving** is the top-tier counterfactual's saving less the shadow calls' USD.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from tierline.record.schema import charges, shadow_outcomes

DAY_S = 86_400
_PLACES = Decimal("1E-10")


def _usd(value: Any) -> str:
    return f"{Decimal(value or 0).quantize(_PLACES):f}"


def shadow_figures(conn: Connection, start_s: float, end_s: float, saved_usd: str
                   ) -> dict[str, Any]:
    """The shadow section of the report of ``[start_s, end_s)``."""
    charged = and_(charges.c.shadow, charges.c.day >= int(start_s // DAY_S),
                   charges.c.day <= int(end_s // DAY_S), charges.c.charged_at >= start_s,
                   charges.c.charged_at < end_s)
    calls, usd = conn.execute(select(func.count(), func.coalesce(func.sum(charges.c.usd), 0))
                              .where(charged)).one()
    graded = and_(shadow_outcomes.c.recorded_at >= start_s, shadow_outcomes.c.recorded_at < end_s,
                  shadow_outcomes.c.agrees_with_top.is_not(None))
    by_tier: dict[str, dict[str, Any]] = {}
    for tier, n, agreed in conn.execute(
            select(shadow_outcomes.c.tier, func.count(),
                   func.sum(func.cast(shadow_outcomes.c.agrees_with_top,
                                      type_=shadow_outcomes.c.tokens_in.type)))
            .where(graded).group_by(shadow_outcomes.c.tier).order_by(shadow_outcomes.c.tier)):
        by_tier[tier] = {"answers": int(n), "agree_share": round(int(agreed or 0) / n, 4)}
    given, given_agreed = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.cast(
            shadow_outcomes.c.agrees_with_top, type_=shadow_outcomes.c.tokens_in.type)), 0))
        .where(graded, shadow_outcomes.c.shadow.is_(False))).one()
    net = Decimal(saved_usd) - Decimal(usd or 0)
    return {"calls": int(calls), "usd": _usd(usd), "shadowed_requests": int(given),
            "agreement_by_tier": by_tier,
            "quality_vs_top": round(int(given_agreed) / given, 4) if given else None,
            "net_saved_usd": _usd(net)}
