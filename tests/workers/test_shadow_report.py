"""The daily report's shadow figures over traffic shadowed by the real tier engine: shadow
calls and their USD apart, agreement with the top tier per tier, the estimated quality of the
answers given, and the saving net of the shadow calls; text and HTML show them."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.cli.report import render
from tierline.record.ledger import reconcile, rollup
from tierline.record.period_report import compute, top_price
from tierline.record.schema import charges

PROMPTS = [f"what is {n} squared minus {n}?" for n in range(4)]


def _reply(model: str, asked: str) -> tuple[int, dict[str, Any]]:
    n = int(asked.split()[2])
    if model == "sim-frontier" and n % 2:
        return 200, completion("The answer is 7")  # the top tier disagrees on odd questions
    return 200, completion("The answer is 42")


def test_the_report_shows_shadow_calls_agreement_per_tier_and_quality_against_the_top(
        tmp_path: Path) -> None:
    policy = demo_policy({"kind": "single"})
    policy["learning"] = {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5,
                          "tiers": "all"}
    with serve(_reply) as url:
        rt = runtime(tmp_path, url, policy)
        started = time.time()
        route_here(rt, PROMPTS)
        with rt.engine.connect() as conn:
            body = compute(conn, started - 1, time.time() + 1, *top_price(rt.policy))
            shadow_usd = conn.execute(select(func.sum(charges.c.usd))
                                      .where(charges.c.shadow)).scalar_one()
            assert reconcile(conn).balanced
            apart = {bool(r["shadow"]): r["calls"] for r in rollup(conn, ["shadow"])}
    assert apart == {True: 8, False: 4}  # `tierline charges --by shadow`
    shadow = body["shadow"]
    assert shadow["calls"] == 8  # sim-mid and sim-frontier for each of the four
    assert Decimal(shadow["usd"]) == Decimal(shadow_usd) > 0
    assert shadow["agreement_by_tier"] == {"t0": {"answers": 4, "agree_share": 0.5},
                                           "t1": {"answers": 4, "agree_share": 0.5},
                                           "t2": {"answers": 4, "agree_share": 1.0}}
    assert shadow["shadowed_requests"] == 4 and shadow["quality_vs_top"] == 0.5
    assert Decimal(shadow["net_saved_usd"]) == (Decimal(body["top_tier"]["saved_usd"])
                                                - Decimal(shadow["usd"]))
    text = " ".join(str(line) for line in render(dt.date(2026, 12, 5), body, "test"))
    assert "shadow calls: 8" in text and "t0 50% of 4" in text and "50.0% of 4" in text


def test_a_day_without_shadow_calls_reports_zeros(tmp_path: Path) -> None:
    with serve(_reply) as url:
        rt = runtime(tmp_path, url, demo_policy({"kind": "single"}))
        route_here(rt, PROMPTS[:1])
        with rt.engine.connect() as conn:
            body = compute(conn, 0, time.time() + 1, *top_price(rt.policy))
    assert body["shadow"] == {"calls": 0, "usd": "0.0000000000",
                              "shadowed_requests": 0, "agreement_by_tier": {},
                              "quality_vs_top": None, "net_saved_usd": body["top_tier"][
                                  "saved_usd"]}
