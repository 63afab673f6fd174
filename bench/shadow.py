"""What live shadow calls cost the tier worker: the same batch traffic at shadow rates 0, 0.1
and 1, through real Redis, Postgres, router and tier worker processes and the simulator.

    TIERLINE_BENCH_REDIS_URL=redis://127.0.0.1:6379/10 python bench/shadow.py --requests 300

Per rate: seconds from submitting to the last answer, the answers' latency (submitted to
answered, p50 and p95), seconds to the last shadow outcome, shadow calls and their USD
against the answers' USD, and whether the ledger reconciles. Shadow calls run after a
bundle's answers are committed, so they cost the worker time, not the answers' latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from throughput import SIM_POLICY, stack  # noqa: E402

from tierline.config.settings import Settings  # noqa: E402
from tierline.producer.client import Client  # noqa: E402
from tierline.record.ledger import reconcile  # noqa: E402
from tierline.record.schema import charges, results, shadow_outcomes  # noqa: E402
from tierline.router.policy import load_policy  # noqa: E402
from tierline.workers.runtime import Runtime, install  # noqa: E402


def policy_at(rate: float, into: Path) -> Path:
    data = yaml.safe_load(SIM_POLICY.read_text())
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    if rate > 0:
        data["learning"] = {"shadow_rate": rate, "lanes": ["batch"], "usd_per_day_max": 100}
    path = into / f"shadow-{rate}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(rate: float, n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    policy = policy_at(rate, tmp)
    logs = tmp / f"logs-{rate}"
    logs.mkdir()
    with stack(policy, logs, args, sim=True) as (env, _procs):
        rt = Runtime(Settings(env["TIERLINE_BROKER_URL"], env["TIERLINE_DATABASE_URL"], policy),
                     load_policy(policy), env)
        install(rt)
        from tierline.workers.app import app  # this process publishes to the stack's broker

        app.conf.broker_url = env["TIERLINE_BROKER_URL"]
        app._pool = None
        app.amqp._producer_pool = None
        prompts = [f"question {k}: what is {k} times {k + 1}?" for k in range(n)]
        started = time.time()
        Client(rt).submit_many(prompts, lane="batch")
        done = 0
        while done < n and time.time() - started < args.wait_s:
            time.sleep(0.2)
            with rt.engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(results)).scalar_one()
        answered_s = time.time() - started
        time.sleep(3 if rate else 0)  # the last bundle's shadow calls
        with rt.engine.connect() as conn:
            latency = conn.execute(select(results.c.latency_s)).scalars().all()
            last_shadow = conn.execute(select(func.max(shadow_outcomes.c.recorded_at))
                                       ).scalar_one()
            shadow_calls, shadow_usd = conn.execute(
                select(func.count(), func.coalesce(func.sum(charges.c.usd), 0))
                .where(charges.c.shadow)).one()
            balance = reconcile(conn)
    return {"rate": rate, "requests": n, "answered_s": round(answered_s, 2),
            "latency_p50_s": round(float(np.percentile(latency, 50)), 3),
            "latency_p95_s": round(float(np.percentile(latency, 95)), 3),
            "shadowed_by_s": round(last_shadow - started, 2) if last_shadow else None,
            "shadow_calls": int(shadow_calls), "shadow_usd": f"{float(shadow_usd):.6f}",
            "answers_usd": f"{float(balance.results_usd):.6f}", "balanced": balance.balanced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rates", default="0,0.1,1")
    parser.add_argument("--router-c", dest="router_c", type=int, default=1)
    parser.add_argument("--tier-c", dest="tier_c", type=int, default=2)
    parser.add_argument("--wait-s", dest="wait_s", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for rate in [float(r) for r in args.rates.split(",")]:
            print(run(rate, args.requests, Path(folder), args), flush=True)


if __name__ == "__main__":
    main()
