"""The periodic report of the record: what a period's requests did and cost, stored once.

A period is ``[start_s, end_s)`` in UTC seconds. What is counted where:

- **Requests** are counted by when they ended (``results.finished_at``), so a request
  submitted at 23:59 and answered at 00:01 belongs to the next day, and a request still
  in flight belongs to no report yet. Their statuses are the results' (``ok``, ``failed``,
  ``cancelled``, ``expired``); latency (submitted → answered) is the answered ones'.
- **Answers** are ``ok`` results, by the model that answered and the tier that attempt was
  recorded on (the tier at the time of the call, not today's policy).
- **Spend** is the ledger's: charges by when they were made (``charged_at``). The ledger
  balances when those charges are exactly the paid attempts (any tokens) that ended in the
  period (``started_at + latency_s``, the moment a charge records): same count, same USD.
  Of them, the calls of **unknown outcome** (made, their answer never recorded: charged at
  their reserved estimate, ``tierline.record.ahead``) are counted apart, with their USD.
- **The top-tier counterfactual** bills each answer's own tokens at the top model's prices
  (as ``tierline.record.reports`` does for a job) and compares it with what the same requests
  cost (``results.usd``: every attempt, failed ones included).
- **Failures** are ``failed`` results by the leading class name of their error
  (``"TooSlow: sim-mid: expected ..."`` → ``TooSlow``); an error without one is counted
  under its text up to the first colon (``job failed``, ``no model of the panel answered``).
- **Shadow** figures (live shadow evaluation) are ``tierline.record.shadow_report``'s.

Money is exact: ``Decimal`` quantised to the ledger's 10 places, written as strings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.engine import Connection

from tierline.record.ahead import UNKNOWN
from tierline.record.db import insert_ignore
from tierline.record.records import Price
from tierline.record.schema import attempts, charges, reports, requests, results
from tierline.record.shadow_report import shadow_figures
from tierline.router.policy import LANES, Policy

DAY_S = 86_400
DAILY = "daily"
_LEDGER_PLACES = Decimal("1E-10")  # the ledger's scale (schema.USD)
_CLASS = re.compile(r"([A-Z][A-Za-z0-9_]*):")


def _lane_order(lane: str) -> tuple[int, str]:
    return (LANES.index(lane) if lane in LANES else len(LANES), lane)


def usd_text(value: Any) -> str:
    """A sum of money as the ledger's exact decimal string (10 places)."""
    return f"{Decimal(value or 0).quantize(_LEDGER_PLACES):f}"


def error_class(error: str | None) -> str:
    """The leading exception class name of a result's error, else its text up to a colon."""
    if not error:
        return "unknown"
    match = _CLASS.match(error)
    if match:
        return match.group(1)
    return error.split(":", 1)[0].strip()[:80] or "unknown"


def day_start_s(day: dt.date) -> float:
    """The UTC midnight that starts ``day``, in UNIX seconds."""
    return float(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _iso(moment_s: float) -> str:
    return dt.datetime.fromtimestamp(moment_s, dt.UTC).isoformat()


def compute(conn: Connection, start_s: float, end_s: float, top_model: str, top: Price
            ) -> dict[str, Any]:
    """The report of ``[start_s, end_s)`` as JSON-ready data (see the module docstring)."""
    ended = and_(results.c.finished_at >= start_s, results.c.finished_at < end_s)
    by_lane: dict[str, dict[str, int]] = defaultdict(dict)
    by_status: dict[str, int] = defaultdict(int)
    climbed = 0
    for lane, status, n, n_climbed in conn.execute(
            select(requests.c.lane, results.c.status, func.count(),
                   func.sum(func.cast(results.c.attempts > 1, type_=results.c.attempts.type)))
            .join(requests, requests.c.id == results.c.request_id).where(ended)
            .group_by(requests.c.lane, results.c.status)):
        by_lane[lane][status] = n
        by_status[status] += n
        climbed += int(n_climbed or 0)
    n_ended = sum(by_status.values())

    answer_tier = (select(func.min(attempts.c.tier))
                   .where(attempts.c.request_id == results.c.request_id,
                          attempts.c.model == results.c.model, attempts.c.ok.is_(True))
                   .scalar_subquery())
    by_model: dict[str, int] = defaultdict(int)
    by_tier: dict[str, int] = defaultdict(int)
    by_lane_tier: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lane, model, tier, n in conn.execute(
            select(requests.c.lane, results.c.model, answer_tier.label("tier"), func.count())
            .join(requests, requests.c.id == results.c.request_id)
            .where(ended, results.c.status == "ok")
            .group_by(requests.c.lane, results.c.model, answer_tier)):
        by_model[model or "?"] += n
        by_tier[tier or "?"] += n
        by_lane_tier[lane][tier or "?"] += n

    latencies: dict[str, list[float]] = defaultdict(list)
    for lane, latency_s in conn.execute(
            select(requests.c.lane, results.c.latency_s)
            .join(requests, requests.c.id == results.c.request_id)
            .where(ended, results.c.status == "ok")):
        latencies[lane].append(latency_s)

    failures: dict[str, int] = defaultdict(int)
    for error, n in conn.execute(select(results.c.error, func.count())
                                 .where(ended, results.c.status == "failed")
                                 .group_by(results.c.error)):
        failures[error_class(error)] += n

    requests_usd = conn.execute(select(func.coalesce(func.sum(results.c.usd), 0))
                                .where(ended)).scalar_one()
    # Each answer's own tokens, billed once at the top model's prices (tierline.record.reports).
    tokens_in, tokens_out = conn.execute(
        select(func.coalesce(func.sum(attempts.c.tokens_in), 0),
               func.coalesce(func.sum(attempts.c.tokens_out), 0))
        .join(results, (results.c.request_id == attempts.c.request_id)
              & (results.c.model == attempts.c.model))
        .where(ended, results.c.status == "ok", attempts.c.ok.is_(True))).one()
    usd_all_top = Decimal(usd_text(top.usd(int(tokens_in), int(tokens_out))))
    saved = usd_all_top - Decimal(usd_text(requests_usd))

    return {
        "period": {"start": _iso(start_s), "end": _iso(end_s), "start_s": start_s,
                   "end_s": end_s},
        "requests": {"ended": n_ended, "by_status": dict(sorted(by_status.items())),
                     "by_lane": {lane: dict(sorted(c.items())) for lane, c in
                                 sorted(by_lane.items(), key=lambda kv: _lane_order(kv[0]))},
                     "more_than_one_attempt": climbed,
                     "more_than_one_attempt_share": round(climbed / n_ended, 4) if n_ended
                     else 0.0},
        "answers": {"by_tier": dict(sorted(by_tier.items())),
                    "by_model": dict(sorted(by_model.items())),
                    "by_lane_tier": {lane: dict(sorted(c.items())) for lane, c in
                                     sorted(by_lane_tier.items(),
                                            key=lambda kv: _lane_order(kv[0]))}},
        "spend": _spend(conn, start_s, end_s),
        "top_tier": {"model": top_model, "requests_usd": usd_text(requests_usd),
                     "usd_all_top": usd_text(usd_all_top), "saved_usd": usd_text(saved),
                     "saved_share": round(float(saved / usd_all_top), 4) if usd_all_top
                     else 0.0},
        "latency_s": {lane: {"answers": len(v), "p50": round(float(np.percentile(v, 50)), 3),
                             "p95": round(float(np.percentile(v, 95)), 3),
                             "p99": round(float(np.percentile(v, 99)), 3)}
                      for lane, v in sorted(latencies.items(),
                                            key=lambda kv: _lane_order(kv[0]))},
        "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
        "shadow": shadow_figures(conn, start_s, end_s, usd_text(saved)),
    }


def _spend(conn: Connection, start_s: float, end_s: float) -> dict[str, Any]:
    """The ledger's charges of the period, and whether they are exactly its paid attempts."""
    # ``day`` is indexed and agrees with ``charged_at``: it narrows the scan, the times decide.
    charged = and_(charges.c.day >= int(start_s // DAY_S), charges.c.day <= int(end_s // DAY_S),
                   charges.c.charged_at >= start_s, charges.c.charged_at < end_s)
    calls, tokens_in, tokens_out, usd = conn.execute(
        select(func.count(), func.coalesce(func.sum(charges.c.tokens_in), 0),
               func.coalesce(func.sum(charges.c.tokens_out), 0),
               func.coalesce(func.sum(charges.c.usd), 0)).where(charged)).one()
    by_model = {m: usd_text(v) for m, v in conn.execute(
        select(charges.c.model, func.sum(charges.c.usd)).where(charged)
        .group_by(charges.c.model).order_by(charges.c.model))}
    by_lane = {lane: usd_text(v) for lane, v in conn.execute(
        select(charges.c.lane, func.sum(charges.c.usd)).where(charged)
        .group_by(charges.c.lane).order_by(charges.c.lane))}
    settled = attempts.c.started_at + attempts.c.latency_s
    paid, paid_usd = conn.execute(
        select(func.count(), func.coalesce(func.sum(attempts.c.usd), 0))
        .where(or_(attempts.c.tokens_in > 0, attempts.c.tokens_out > 0),
               settled >= start_s, settled < end_s)).one()
    unknown, unknown_usd = conn.execute(
        select(func.count(), func.coalesce(func.sum(attempts.c.usd), 0))
        .where(attempts.c.error.like(f"{UNKNOWN}:%"), settled >= start_s, settled < end_s)).one()
    return {"ledger_usd": usd_text(usd), "calls": int(calls), "tokens_in": int(tokens_in),
            "tokens_out": int(tokens_out), "by_model": by_model, "by_lane": by_lane,
            "unknown_outcome_calls": int(unknown), "unknown_outcome_usd": usd_text(unknown_usd),
            "paid_attempts": int(paid), "paid_attempts_usd": usd_text(paid_usd),
            "balanced": int(calls) == int(paid) and usd_text(usd) == usd_text(paid_usd)}


def store(conn: Connection, kind: str, start_s: float, end_s: float, body: dict[str, Any],
          now_s: float) -> bool:
    """Write a report unless one of this kind and period is stored; True when it was new."""
    return insert_ignore(conn, reports, [{"kind": kind, "period_start": start_s,
                                          "period_end": end_s, "created_at": now_s,
                                          "body": body}]) == 1


def stored(conn: Connection, kind: str, start_s: float) -> tuple[dict[str, Any], float] | None:
    """The stored report of this kind and period, with when it was made; None if there is none."""
    row = conn.execute(select(reports.c.body, reports.c.created_at)
                       .where(reports.c.kind == kind, reports.c.period_start == start_s)).first()
    return None if row is None else (row.body, row.created_at)


def latest_start(conn: Connection, kind: str) -> float | None:
    """The start of the newest stored report of ``kind``."""
    value = conn.execute(select(func.max(reports.c.period_start))
                         .where(reports.c.kind == kind)).scalar_one()
    return None if value is None else float(value)


def top_price(policy: Policy) -> tuple[str, Price]:
    """The top tier's preferred model and its prices: the counterfactual's."""
    name = policy.top_model()
    spec = policy.models[name]
    return name, Price(Decimal(str(spec.usd_per_1m_input)), Decimal(str(spec.usd_per_1m_output)))


def record_day(engine: Engine, policy: Policy, day: dt.date, now_s: float
               ) -> tuple[dict[str, Any], bool]:
    """Compute and store the daily report of ``day`` (UTC), which must be over; returns the
    stored body (an earlier one if the day was already recorded) and whether it is new."""
    start_s = day_start_s(day)
    if start_s + DAY_S > now_s:
        raise ValueError(f"{day} (UTC) is not over yet: its report would be incomplete")
    with engine.begin() as conn:
        found = stored(conn, DAILY, start_s)
        if found is not None:
            return found[0], False
        body = compute(conn, start_s, start_s + DAY_S, *top_price(policy))
        new = store(conn, DAILY, start_s, start_s + DAY_S, body, now_s)
    if new:
        return body, True
    with engine.connect() as conn:  # another writer got there first: its body stands
        again = stored(conn, DAILY, start_s)
    assert again is not None
    return again[0], False
