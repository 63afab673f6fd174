"""``tierline demo``: a sample workload through the whole pipeline, in one process."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from itertools import islice
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tierline.config.settings import POLICY_DIR, Settings, data_dir
from tierline.producer.client import Client
from tierline.producer.embedded import embedded
from tierline.record.records import Price
from tierline.record.reports import job_summary

SAMPLE = Path(__file__).resolve().parent / "samples" / "demo.jsonl"


def run_demo(*, n_requests: int, database: Path | None, console: Console,
             settings: Settings) -> None:
    """Submit the sample workload, wait for it, and print what it did and cost."""
    policy_path = POLICY_DIR / "demo.yaml"
    lines = [json.loads(line) for line in islice(SAMPLE.open(encoding="utf-8"), n_requests)]
    started = time.monotonic()
    with console.status("starting the embedded stack: SQLite, in-memory broker, "
                        "workers, simulator"):
        record = _record(database, settings)
        stack = embedded(policy_path, database=record, settings=settings)
        rt = stack.__enter__()
    try:
        client = Client(rt)
        report = client.submit_many(lines, job="demo")
        with console.status(f"routing and answering {report.accepted} requests"):
            status = client.wait(report.job_id, timeout_s=120)
        elapsed = time.monotonic() - started
        policy = rt.policy
        top = policy.models[policy.top_model()]
        with rt.engine.connect() as conn:
            summary = job_summary(
                conn, report.job_id, {m: policy.tier_of(m) for m in policy.models},
                Price(Decimal(str(top.usd_per_1m_input)), Decimal(str(top.usd_per_1m_output))))
    finally:
        stack.__exit__(None, None, None)
    console.print(_table(policy.tier_names, summary))
    saved = 1 - summary.usd / summary.usd_all_top if summary.usd_all_top else Decimal(0)
    console.print(
        f"total [bold]${summary.usd:.6f}[/bold]; everything on the top tier "
        f"({policy.top_model()}) would cost ${summary.usd_all_top:.6f}: "
        f"[bold]{saved:.0%} saved[/bold]. Ledger ${summary.usd:.6f} = attempts "
        f"${summary.usd_attempts:.6f}.")
    console.print(f"{status.finished}/{status.total} requests answered "
                  f"({summary.failed} failed) in {elapsed:.1f} s; job {report.job_id}")
    console.print(_inspect_hint(record, report.job_id, settings), highlight=False)


def _record(database: Path | None, settings: Settings) -> Path:
    """Where the demo keeps its record: ``database``, else the data directory's record
    (whatever ``TIERLINE_DATABASE_URL`` says: the demo is always embedded)."""
    if database is not None:
        return database.resolve()
    return (settings.home or data_dir(settings.env)) / "tierline.sqlite"


def _inspect_hint(record: Path, job_id: str, settings: Settings) -> str:
    """How to look at the demo's job afterwards, from any folder."""
    prefix = ""
    if settings.database_url != f"sqlite:///{record}" or not settings.embedded:
        prefix = f"TIERLINE_DATABASE_URL=sqlite:///{record} "
        if not settings.embedded:
            prefix = "env -u TIERLINE_BROKER_URL " + prefix
    return (f"The record is kept in {record}; look at the job again with\n"
            f"  {prefix}tierline status {job_id}\n"
            f"  {prefix}tierline results {job_id}")


def _table(tiers: tuple[str, ...], summary: object) -> Table:
    from tierline.record.reports import JobSummary

    assert isinstance(summary, JobSummary)
    lanes = ("realtime", "standard", "batch")
    table = Table(title="tierline demo: requests per tier and lane")
    table.add_column("lane")
    for tier in tiers:
        table.add_column(tier, justify="right")
    table.add_column("p50 latency", justify="right")
    table.add_column("p95 latency", justify="right")
    for lane in lanes:
        p50, p95 = summary.latency_s.get(lane, (float("nan"), float("nan")))
        table.add_row(lane, *(str(summary.by_tier_lane.get((t, lane), 0)) for t in tiers),
                      f"{p50 * 1000:.0f} ms", f"{p95 * 1000:.0f} ms")
    return table
