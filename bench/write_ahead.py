"""What the write-ahead's statements cost apart: writing 100,000 calls ahead in rounds of 256,
and deleting them once settled, each way side by side on a fresh Postgres database.

    python bench/write_ahead.py [--calls 100000] [--round 256] [--repeat 3]

Writing: a transaction per round (``engine.begin()``) against one autocommitted statement.
Deleting: one ``DELETE ... = ANY(ids)`` per round, each in its own transaction (as the
outcome transaction did) against one bulk pass (``ahead.fold``, as the watchdog does now).
Prints wall seconds and the Postgres backends' CPU seconds (from /proc), medians of the
repetitions. Uses the workers' engine settings (``tierline.record.db``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tierline.record import ahead  # noqa: E402
from tierline.record.ahead import Ahead  # noqa: E402
from tierline.record.db import engine_for  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Settled rows: each pending row has its attempt (the foreign key to requests is skipped).
SETTLED = """SET session_replication_role = replica;
TRUNCATE attempts CASCADE; TRUNCATE pending_attempts;
INSERT INTO attempts (id, request_id, seq, model, tier, ok, tokens_in, tokens_out,
  usage_estimated, latency_s, usd, started_at)
  SELECT 'r' || g || '/0', 'r' || g, 0, 'm', 't0', true, 40, 3, false, 0.01, 0.0001, 1000
  FROM generate_series(1, {n}) g;
INSERT INTO pending_attempts (id, request_id, seq, model, tier, tokens_in, tokens_out,
  usd_per_1m_input, usd_per_1m_output, started_at)
  SELECT 'r' || g || '/0', 'r' || g, 0, 'm', 't0', 40, 3, 0.1, 0.4, 1000
  FROM generate_series(1, {n}) g;
VACUUM ANALYZE attempts; VACUUM ANALYZE pending_attempts"""


def _backends_cpu_s(db: str) -> float:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute(
            "select pid from pg_stat_activity where datname = %s", (db,))]
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _plain(url: str) -> str:
    return url.replace("+psycopg", "")


def _sql(url: str, script: str) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        for stmt in script.split(";"):
            if stmt.strip():
                conn.execute(stmt)


def _write(engine: Engine, calls: int, size: int, autocommit: bool, tag: str) -> None:
    for start in range(0, calls, size):
        batch = [Ahead(f"{tag}-{g}", 0, "sim-mid", "t1", 40, 512, Decimal("0.8"),
                       Decimal("3.2"), 1000.0) for g in range(start, min(start + size, calls))]
        if autocommit:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                ahead.write(conn, batch)
        else:
            with engine.begin() as conn:
                ahead.write(conn, batch)


def _delete(engine: Engine, calls: int, size: int, bulk: bool) -> None:
    if bulk:
        with engine.begin() as conn:
            assert ahead.fold(conn, started_before=2000.0) == 0  # all settled: none unknown
        return
    ids = [f"r{g}/0" for g in range(1, calls + 1)]
    for start in range(0, calls, size):
        with engine.begin() as conn:
            ahead.settle(conn, ids[start:start + size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--round", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    db = f"tierline_ahead_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    try:
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True,
                       cwd=ROOT, env={**os.environ, "TIERLINE_DATABASE_URL": url},
                       capture_output=True)
        engine = engine_for(url)
        cases: dict[str, tuple[Callable[[], None], Callable[[int], None]]] = {
            "write: a transaction per round": (
                lambda: _sql(url, "TRUNCATE pending_attempts"),
                lambda rep: _write(engine, args.calls, args.round, False, f"t{rep}")),
            "write: one autocommitted statement per round": (
                lambda: _sql(url, "TRUNCATE pending_attempts"),
                lambda rep: _write(engine, args.calls, args.round, True, f"a{rep}")),
            "delete: one statement per round": (
                lambda: _sql(url, SETTLED.format(n=args.calls)),
                lambda _rep: _delete(engine, args.calls, args.round, False)),
            "delete: one bulk pass (ahead.fold)": (
                lambda: _sql(url, SETTLED.format(n=args.calls)),
                lambda _rep: _delete(engine, args.calls, args.round, True)),
        }
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for rep in range(args.repeat):
            for name, (prepare, run) in cases.items():  # alternating, one of each per round
                prepare()
                with engine.connect() as conn:  # the pool's connection, before the clock
                    conn.exec_driver_sql("select 1")
                cpu0, wall0 = _backends_cpu_s(db), time.perf_counter()
                run(rep)
                seen[name].append((time.perf_counter() - wall0, _backends_cpu_s(db) - cpu0))
        for name, runs in seen.items():
            print(f"{name}: wall {statistics.median(w for w, _ in runs):.2f} s, Postgres CPU "
                  f"{statistics.median(c for _, c in runs):.2f} s "
                  f"(runs: {', '.join(f'{w:.2f}/{c:.2f}' for w, c in runs)})")
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
