"""The period report as one self-contained HTML file: tables and matplotlib charts inline.

A page covers one UTC day or one ISO week (Monday to Sunday). It shows, from the stored
daily reports (``tierline.record.period_report``) and the ledger (``tierline.record.ledger``):
spend and
saving against the top tier per day, requests by lane and tier, latency percentiles per
lane, failures by class, and each model's token-budget use per day. Charts are PNGs
embedded as base64 ``data:`` URIs: the file opens anywhere, offline, and can be mailed.
matplotlib is imported only here, with the Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from tierline.record.ledger import rollup
from tierline.record.period_report import (
    DAILY,
    DAY_S,
    compute,
    day_start_s,
    record_day,
    stored,
    top_price,
)
from tierline.router.policy import LANES, Policy

CHARTS = ("spend", "requests", "latency", "failures", "budget")


@dataclass(frozen=True)
class Period:
    """What one page covers: its title, its days, each day's report and the whole span's."""

    title: str
    days: list[dt.date]
    daily: list[dict[str, Any]]
    total: dict[str, Any]
    tokens: dict[str, dict[str, int]]  # model -> ISO day -> tokens charged (in + out)
    tokens_per_day: dict[str, int]  # model -> daily budget, for models that have one


def week_days(week: str) -> list[dt.date]:
    """The seven days of an ISO week written ``YYYY-Www`` (e.g. ``2026-W49``)."""
    try:
        year, number = week.upper().split("-W")
        monday = dt.date.fromisocalendar(int(year), int(number), 1)
    except ValueError as exc:
        raise ValueError(f"--week: {week!r} is not an ISO week (YYYY-Www, e.g. 2026-W49)"
                         ) from exc
    return [monday + dt.timedelta(days=n) for n in range(7)]


def gather(engine: Engine, policy: Policy, days: Sequence[dt.date], now_s: float,
           title: str) -> Period:
    """Each day's report (stored ones read, finished ones stored now, today's so far; days
    still to come are left out), the span's, and the ledger's tokens by model and day."""
    days = [d for d in days if day_start_s(d) <= now_s]
    if not days:
        raise ValueError(f"{title}: the period has not started yet")
    start_s = day_start_s(days[0])
    end_s = min(day_start_s(days[-1]) + DAY_S, now_s)
    top = top_price(policy)
    daily = []
    for day in days:
        begin = day_start_s(day)
        if begin + DAY_S <= now_s:
            daily.append(record_day(engine, policy, day, now_s)[0])
            continue
        with engine.connect() as conn:
            daily.append(compute(conn, begin, now_s, *top))
    with engine.connect() as conn:
        found = stored(conn, DAILY, start_s) if len(days) == 1 and end_s - start_s == DAY_S \
            else None
        total = found[0] if found else compute(conn, start_s, end_s, *top)
        tokens: dict[str, dict[str, int]] = {}
        for row in rollup(conn, ["model", "day"], since_s=start_s, until_s=end_s):
            tokens.setdefault(row["model"], {})[row["day"]] = \
                int(row["tokens_in"] or 0) + int(row["tokens_out"] or 0)
    budgets = {name: spec.limits.tokens_per_day for name, spec in policy.models.items()
               if spec.limits.tokens_per_day}
    return Period(title, list(days), daily, total, tokens, budgets)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def charts(period: Period) -> dict[str, str]:
    """The page's charts as base64 PNGs, by name (``CHARTS``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    labels = [d.isoformat()[5:] for d in period.days]
    x = list(range(len(labels)))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    spent = [float(Decimal(b["top_tier"]["requests_usd"])) for b in period.daily]
    all_top = [float(Decimal(b["top_tier"]["usd_all_top"])) for b in period.daily]
    ax.bar([i - 0.2 for i in x], all_top, 0.4, label="all on the top tier", color="#c9c9c9")
    ax.bar([i + 0.2 for i in x], spent, 0.4, label="spent", color="#2a7ab9")
    ax.set_xticks(x, labels)
    pad = max(0.0, (4 - len(x)) / 2)  # a single day keeps bars of a readable width
    ax.set_xlim(-0.6 - pad, len(x) - 0.4 + pad)
    ax.set_ylabel("USD")
    ax.set_title("Spend against the top tier, per day (UTC)")
    ax.legend(loc="upper left")
    out["spend"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    by_lane_tier = period.total["answers"].get("by_lane_tier", {})
    by_lane = period.total["requests"]["by_lane"]
    lanes = [lane for lane in LANES if lane in by_lane] + \
        [lane for lane in by_lane if lane not in LANES]
    tiers = sorted({t for c in by_lane_tier.values() for t in c})
    bottom = [0.0] * len(lanes)
    for tier in tiers:
        heights = [by_lane_tier.get(lane, {}).get(tier, 0) for lane in lanes]
        ax.bar(lanes, heights, bottom=bottom, label=f"answered on {tier}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    unanswered = [sum(n for s, n in by_lane[lane].items() if s != "ok") for lane in lanes]
    if any(unanswered):
        ax.bar(lanes, unanswered, bottom=bottom, label="not answered", color="#d9534f")
    if lanes:
        ax.legend(fontsize="small")
        ax.set_ylabel("requests")
    else:
        _empty(ax, "no request ended")
    ax.set_title("Requests by lane and tier")
    out["requests"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    latency = period.total["latency_s"]
    names = [lane for lane in LANES if lane in latency]
    for k, pct in enumerate(("p50", "p95", "p99")):
        ax.bar([i + (k - 1) * 0.27 for i in range(len(names))],
               [latency[lane].get(pct, 0.0) for lane in names], 0.27, label=pct)
    if names:
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("seconds")
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no answer")
    ax.set_title("Latency percentiles per lane, submitted to answered")
    out["latency"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    failures = period.total["failures"]
    if failures:
        classes = list(failures)[::-1]
        ax.barh(classes, [failures[c] for c in classes], color="#d9534f")
        ax.set_xlabel("failed requests")
    else:
        _empty(ax, "no failure")
    ax.set_title("Failures by class")
    out["failures"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    models = sorted(period.tokens_per_day)
    width = 0.8 / max(1, len(models))
    for k, model in enumerate(models):
        used = [100 * period.tokens.get(model, {}).get(d.isoformat(), 0)
                / period.tokens_per_day[model] for d in period.days]
        ax.bar([i - 0.4 + (k + 0.5) * width for i in x], used, width, label=model)
    if models:
        ax.axhline(100, color="#d9534f", linewidth=1)
        ax.set_xticks(x, labels)
        ax.set_ylabel("% of tokens_per_day")
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no model has a daily token budget")
    ax.set_title("Token-budget use per model, per day")
    out["budget"] = _png(fig)
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}th{background:#f4f4f4}
img{display:block;margin:1rem 0;max-width:100%}
.bad{color:#b52b27;font-weight:bold}"""


def page(period: Period) -> str:
    """The self-contained HTML page of ``period``."""
    total = period.total
    top = total["top_tier"]
    spend = total["spend"]
    images = charts(period)
    alt = {"spend": "spend against the top tier per day", "requests": "requests by lane and tier",
           "latency": "latency percentiles per lane", "failures": "failures by class",
           "budget": "token-budget use per model"}
    state = "balanced" if spend["balanced"] else '<span class="bad">NOT balanced</span>'
    # Reports stored before these were counted have no such keys.
    unknown = spend.get("unknown_outcome_calls", 0)
    unknown_line = (f"\nOf them, {unknown} calls of unknown outcome (made, their answer never "
                    f"recorded), charged at their reserved estimate: "
                    f"${spend['unknown_outcome_usd']}." if unknown else "")
    days = _table(["day", "requests ended", "spent (USD)", "all on top tier (USD)", "saved",
                   "unknown-outcome calls", "their USD"],
                  [[d.isoformat(), b["requests"]["ended"], b["top_tier"]["requests_usd"],
                    b["top_tier"]["usd_all_top"], f"{b['top_tier']['saved_share']:.0%}",
                    b["spend"].get("unknown_outcome_calls", 0),
                    b["spend"].get("unknown_outcome_usd", "-")]
                   for d, b in zip(period.days, period.daily, strict=True)])
    lanes = _table(["lane", "answers", "p50 (s)", "p95 (s)", "p99 (s)"],
                   [[lane, v["answers"], v["p50"], v["p95"], v.get("p99", "-")]
                    for lane, v in total["latency_s"].items()])
    shadow = _shadow_paragraph(total.get("shadow"))
    figures = "".join(f'<img alt="{html.escape(alt[name])}" width="672" '
                      f'src="data:image/png;base64,{images[name]}">' for name in CHARTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(period.title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(period.title)}</h1>
<p>{total['requests']['ended']} requests ended, {total['requests']['more_than_one_attempt']}
needed more than one attempt. They cost ${top['requests_usd']}; all on the top tier
({html.escape(top['model'])}) they would have cost ${top['usd_all_top']}:
<b>${top['saved_usd']} saved ({top['saved_share']:.0%})</b>.
Ledger ${spend['ledger_usd']} over {spend['calls']} charges: {state}.{unknown_line}</p>
{shadow}{days}{lanes}{figures}
</body></html>
"""


def _shadow_paragraph(shadow: dict[str, Any] | None) -> str:
    """The shadow calls' cost, agreement per tier and estimated quality, if any were made."""
    if not shadow or not (shadow["calls"] or shadow["shadowed_requests"]):
        return ""
    quality = shadow["quality_vs_top"]
    rows = _table(["tier", "answers graded", "agree with the top tier"],
                  [[t, a["answers"], f"{a['agree_share']:.1%}"]
                   for t, a in shadow["agreement_by_tier"].items()])
    return (f"<p>Shadow calls: {shadow['calls']} for ${html.escape(shadow['usd'])}. "
            f"On {shadow['shadowed_requests']} shadowed requests the answers given agreed "
            f"with the top tier's on {'-' if quality is None else f'{quality:.1%}'}; "
            f"saved net of the shadow calls: ${html.escape(shadow['net_saved_usd'])}.</p>{rows}")
