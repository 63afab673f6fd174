"""The record of live shadow evaluation: shadow attempts and charges, graded outcomes, the
day's shadow spend, and the outcomes read back as traffic records for retraining."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from tierline.record import ahead
from tierline.record.db import among, insert_ignore
from tierline.record.records import (
    AttemptRow,
    Price,
    ResultRow,
    attempt_row,
    charge_row,
    request_of,
)
from tierline.record.schema import attempts, charges, requests, results, shadow_outcomes
from tierline.router.envelope import Request
from tierline.router.evaluation.dataset import Outcome
from tierline.router.learned.traffic import traffic_record

SHADOW_SEQ_FROM = 1000  # shadow attempts are numbered apart from the request's own calls


# A shadow call is recorded as an attempt row is (its seq from SHADOW_SEQ_FROM on).
ShadowCall = AttemptRow


def spent_today_usd(conn: Connection, day: int) -> Decimal:
    """What the shadow calls charged on this UTC day."""
    query = select(func.coalesce(func.sum(charges.c.usd), 0)).where(
        charges.c.day == day, charges.c.shadow)
    return Decimal(conn.execute(query).scalar_one())


def shadowed_count(conn: Connection, up_to: int) -> int:
    """How many requests have shadow outcomes on record, counted up to ``up_to``."""
    shadowed = select(shadow_outcomes.c.request_id).distinct().limit(up_to).subquery()
    return int(conn.execute(select(func.count()).select_from(shadowed)).scalar_one())


def answered(conn: Connection, request_ids: Sequence[str]
             ) -> tuple[list[ResultRow], dict[str, Request], dict[str, str | None]]:
    """What the shadow calls of these requests start from: their answers (``ok`` results),
    the requests, and their jobs."""
    if not request_ids:
        return [], {}, {}
    rows = conn.execute(select(requests, results.c.status, results.c.model.label("answered_by"),
                               results.c.content, results.c.finished_at)
                        .join(results, results.c.request_id == requests.c.id)
                        .where(among(conn, requests.c.id, list(request_ids)),
                               results.c.status == "ok")).all()
    return ([ResultRow(r.id, r.status, r.answered_by, r.content, None, r.finished_at)
             for r in rows], {r.id: request_of(r) for r in rows},
            {r.id: r.job_id for r in rows})


def already_shadowed(conn: Connection, request_ids: Sequence[str]) -> set[str]:
    """The requests whose shadow outcomes are on record (a redelivered bundle's)."""
    if not request_ids:
        return set()
    query = select(shadow_outcomes.c.request_id).where(
        among(conn, shadow_outcomes.c.request_id, request_ids)).distinct()
    return {rid for (rid,) in conn.execute(query)}


def answering_attempts(conn: Connection, answered: dict[str, str]
                       ) -> dict[str, tuple[int, int, Decimal]]:
    """Tokens in, out and USD of the call that gave each request its answer (by model; the
    latest such call), by request."""
    if not answered:
        return {}
    query = (select(attempts.c.request_id, attempts.c.model, attempts.c.tokens_in,
                    attempts.c.tokens_out, attempts.c.usd)
             .where(among(conn, attempts.c.request_id, list(answered)), attempts.c.ok,
                    attempts.c.shadow.is_(False))
             .order_by(attempts.c.seq))
    found: dict[str, tuple[int, int, Decimal]] = {}
    for rid, model, tokens_in, tokens_out, usd in conn.execute(query):
        if answered.get(rid) == model:
            found[rid] = (tokens_in, tokens_out, Decimal(usd))
    return found


def record_calls(conn: Connection, calls: Sequence[ShadowCall], prices: dict[str, Price],
                 who: dict[str, tuple[str, str, str | None]]) -> None:
    """Shadow attempts and the charges of those that used tokens, marked ``shadow``; keyed,
    so a repeat writes nothing. ``who``: (tenant, lane, job id) by request."""
    attempt_rows: list[dict[str, Any]] = []
    charge_rows: list[dict[str, Any]] = []
    for c in calls:
        price = prices[c.model]
        attempt_rows.append(attempt_row(c, price, shadow=True))
        if c.tokens_in or c.tokens_out:
            tenant, lane, job_id = who[c.request_id]
            charge_rows.append(charge_row(c, price, tenant, lane, job_id, shadow=True))
    insert_ignore(conn, attempts, attempt_rows)
    insert_ignore(conn, charges, charge_rows)
    ahead.settle(conn, [c.id for c in calls])  # their write-ahead rows are done with


def record_outcomes(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Graded outcomes (one row per request and model); keyed, so a repeat writes nothing."""
    insert_ignore(conn, shadow_outcomes, list(rows))


def traffic_records(conn: Connection, since_s: float = 0.0, limit: int = 100_000
                    ) -> list[dict[str, Any]]:
    """The shadowed requests since ``since_s`` as traffic records
    (tierline.router.learned.traffic), oldest
    first: the prompt, and per model its response and token counts. Only requests whose top
    tier's answer is on record are kept: it is what the others are graded by."""
    query = (select(shadow_outcomes).where(shadow_outcomes.c.recorded_at >= since_s)
             .order_by(shadow_outcomes.c.recorded_at, shadow_outcomes.c.id).limit(limit))
    by_request: dict[str, list[Any]] = {}
    for row in conn.execute(query):
        by_request.setdefault(row.request_id, []).append(row)
    prompts: dict[str, str] = {}
    ids = list(by_request)
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        for rid, body in conn.execute(select(requests.c.id, requests.c.body)
                                      .where(among(conn, requests.c.id, chunk))):
            prompts[rid] = "\n".join(str(m.get("content", "")) for m in body["messages"]
                                     if isinstance(m, dict))
    out = []
    for rid, rows in by_request.items():
        top = rows[0].top_model
        if rid not in prompts or top not in {r.model for r in rows}:
            continue
        out.append(traffic_record(rid, prompts[rid], top, {
            r.model: Outcome(r.response, None, 0.0, r.tokens_in, r.tokens_out) for r in rows}))
    return out
