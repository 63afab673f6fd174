"""What observing costs: counting one bundle's outcomes (in one process, and in prefork's
multiprocess mode), one scrape of the cluster's gauges from Redis, one HTML report page.

    python bench/metrics_overhead.py [--bundle 64] [--repeat 2000] [--redis redis://...]

Prints medians of 5 runs; the multiprocess case runs in a child process, as it must set
PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def count_bundle(bundle: int, repeat: int) -> float:
    """Microseconds to count one bundle of ``bundle`` attempts and results."""
    from tierline import metrics
    from tierline.record.records import AttemptRow, ResultRow
    from tierline.router.envelope import Request

    now = time.time()
    context = {f"r{i}": Request(id=f"r{i}", tenant=f"tenant-{i % 3}", lane="batch",
                                messages=({"role": "user", "content": "x"},), metadata={},
                                max_output_tokens=20, latency_budget_s=3600.0,
                                submitted_at=now - 5, deadline_at=now + 3600)
               for i in range(bundle)}
    made = [AttemptRow(f"r{i}", 0, "sim-nano", "t0", i % 10 != 0,
                       None if i % 10 else "Rejected: no", 40, 3, False, 0.2, now - 1)
            for i in range(bundle)]
    done = [ResultRow(f"r{i}", "ok" if i % 10 else "failed", "sim-nano", "a", None, now)
            for i in range(bundle)]
    usd = {a.id: Decimal("0.0000052") for a in made}
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            metrics.outcomes(made, done, usd, context)
        runs.append((time.perf_counter() - start) / repeat * 1e6)
    return statistics.median(runs)


def scrape(redis_url: str) -> float:
    """Milliseconds for one exporter scrape (depths, absorber, breakers) of the demo policy."""
    os.environ.update(TIERLINE_BROKER_URL=redis_url,
                      TIERLINE_POLICY=str(ROOT / "policies" / "demo.yaml"))
    from tierline import metrics
    from tierline.workers.metrics_cluster import cluster_collector

    metrics.render(cluster_collector())
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(50):
            metrics.render(cluster_collector())
        runs.append((time.perf_counter() - start) / 50 * 1e3)
    return statistics.median(runs)


def html_page() -> float:
    """Seconds to draw a week's page (7 days of reports, 3 lanes, 3 tiers, 3 models)."""
    import datetime as dt

    from tierline.schedules.report_html import Period, page

    body = {"requests": {"ended": 900, "more_than_one_attempt": 80,
                         "by_lane": {lane: {"ok": 290, "failed": 10}
                                     for lane in ("realtime", "standard", "batch")}},
            "answers": {"by_lane_tier": {lane: {"t0": 200, "t1": 70, "t2": 20}
                                         for lane in ("realtime", "standard", "batch")}},
            "top_tier": {"model": "sim-frontier", "requests_usd": "0.0100000000",
                         "usd_all_top": "0.0600000000", "saved_usd": "0.0500000000",
                         "saved_share": 0.8333},
            "spend": {"ledger_usd": "0.0100000000", "calls": 980, "balanced": True},
            "latency_s": {lane: {"answers": 290, "p50": 0.2, "p95": 0.9, "p99": 2.0}
                          for lane in ("realtime", "standard", "batch")},
            "failures": {"Rejected": 20, "TooSlow": 10}}
    days = [dt.date(2026, 11, 30) + dt.timedelta(days=n) for n in range(7)]
    period = Period("bench", days, [body] * 7, body,
                    {m: {d.isoformat(): 40_000 for d in days}
                     for m in ("sim-nano", "sim-mid", "sim-frontier")},
                    {"sim-nano": 100_000, "sim-mid": 80_000, "sim-frontier": 60_000})
    page(period)  # matplotlib's first import and font cache are not what a page costs
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        page(period)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--child", choices=["count"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "count":
        print(json.dumps(count_bundle(args.bundle, args.repeat)))
        return
    single = subprocess.run([sys.executable, __file__, "--child", "count", "--bundle",
                             str(args.bundle), "--repeat", str(args.repeat)],
                            env={k: v for k, v in os.environ.items()
                                 if k != "PROMETHEUS_MULTIPROC_DIR"},
                            capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as folder:
        multi = subprocess.run([sys.executable, __file__, "--child", "count", "--bundle",
                                str(args.bundle), "--repeat", str(args.repeat)],
                               env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
                               capture_output=True, text=True, check=True)
    one, many = json.loads(single.stdout), json.loads(multi.stdout)
    print(f"count a bundle of {args.bundle}: one process {one:.0f} µs "
          f"({one / args.bundle:.1f} µs per request); multiprocess {many:.0f} µs "
          f"({many / args.bundle:.1f} µs per request); ratio {many / one:.2f}")
    print(f"one exporter scrape (12 queues, 3 models): {scrape(args.redis):.2f} ms")
    print(f"one weekly HTML page (5 charts): {html_page():.2f} s")


if __name__ == "__main__":
    main()
