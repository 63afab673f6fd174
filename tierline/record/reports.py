"""Read-only summaries of the record: per-job spend, counterfactual spend, latency by lane."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from tierline.record.records import Price
from tierline.record.schema import attempts, charges, requests, results


@dataclass(frozen=True)
class JobSummary:
    """What a job did and cost."""

    by_tier_lane: dict[tuple[str, str], int]  # answered requests per (tier, lane)
    failed: int
    usd: Decimal  # the ledger's total for the job
    usd_attempts: Decimal  # the attempts' total: must equal ``usd``
    usd_all_top: Decimal  # the same tokens, all billed at the top model's prices
    latency_s: dict[str, tuple[float, float]]  # lane -> (p50, p95), submitted → answered
    escalated: int  # requests that needed more than one attempt


def job_summary(conn: Connection, job_id: str, tier_of: dict[str, str], top: Price) -> JobSummary:
    """Summarise a job from its results, attempts and charges."""
    rows = conn.execute(
        select(requests.c.lane, results.c.status, results.c.model, results.c.latency_s,
               results.c.attempts)
        .join(results, results.c.request_id == requests.c.id)
        .where(requests.c.job_id == job_id))
    by_tier_lane: dict[tuple[str, str], int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    failed = escalated = 0
    for lane, status, model, latency_s, n_attempts in rows:
        if status == "ok":
            by_tier_lane[(tier_of.get(model, "?"), lane)] += 1
            latencies[lane].append(latency_s)
        else:
            failed += 1
        escalated += n_attempts > 1
    usd = conn.execute(select(func.coalesce(func.sum(charges.c.usd), 0))
                       .where(charges.c.job_id == job_id)).scalar_one()
    usd_attempts = conn.execute(
        select(func.coalesce(func.sum(attempts.c.usd), 0))
        .join(requests, requests.c.id == attempts.c.request_id)
        .where(requests.c.job_id == job_id)).scalar_one()
    # The counterfactual: each answer's own tokens, billed once at the top model's prices.
    answered = (select(attempts.c.tokens_in, attempts.c.tokens_out)
                .join(results, (results.c.request_id == attempts.c.request_id)
                      & (results.c.model == attempts.c.model))
                .join(requests, requests.c.id == attempts.c.request_id)
                .where(requests.c.job_id == job_id, attempts.c.ok.is_(True)))
    usd_all_top = sum((top.usd(t_in, t_out) for t_in, t_out in conn.execute(answered)),
                      Decimal(0))
    pcts = {lane: (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
            for lane, v in latencies.items()}
    return JobSummary(dict(by_tier_lane), failed, Decimal(usd), Decimal(usd_attempts),
                      usd_all_top, pcts,
                      escalated)
