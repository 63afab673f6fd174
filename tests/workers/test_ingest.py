"""Intake streams and writes in bulk: chunked inserts and ingress messages, flat producer
memory on a 50k-line file, and one statement per table for a bundle's outcomes."""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.producer.intake import read_jsonl
from tierline.record import records
from tierline.record.db import upgrade
from tierline.record.records import AttemptRow, Price, ResultRow
from tierline.record.schema import charges, requests, results
from tierline.router.live.decide import Decision
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "bench-instant.yaml"
ROWS = 50_000


def _write(path: Path, rows: int, *, repeat_every: int = 0) -> Path:
    with path.open("w") as out:
        for i in range(rows):
            key = i - 1 if repeat_every and i % repeat_every == 0 and i else i
            prompt = f"Labels: billing, shipping\nText:\nwhere is parcel {i}, ordered monday?"
            out.write(json.dumps({"id": f"k{key}", "prompt": prompt}) + "\n")
    return path


def _runtime(url: str) -> Runtime:
    return Runtime(Settings("memory://", url, POLICY), load_policy(POLICY))


def _producer(rt: Runtime, published: list[int]) -> Client:
    """A producer whose ingress messages are counted instead of sent to a broker."""

    def count(lane: str, request_ids: list[str], *, retry: bool) -> None:
        published.append(len(request_ids))

    return Client(rt, publish=count)


def _statements(engine: Engine) -> Counter[str]:
    """Counts of statements sent, by their first three words ('INSERT INTO "requests"')."""
    seen: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(statement.split()[:3]).replace('"', "")] += 1

    return seen


@pytest.fixture
def pg(own_postgres_url: str) -> Iterator[Runtime]:
    """Its own database: these requests are never enqueued, and a sweeper must not see them."""
    rt = _runtime(own_postgres_url)
    yield rt
    rt.engine.dispose()


def test_a_50k_line_file_is_inserted_in_chunks_with_flat_memory(pg: Runtime, tmp_path: Path
                                                                  ) -> None:
    path = _write(tmp_path / "big.jsonl", ROWS)
    chunk = pg.policy.bundling.ingress_chunk
    published: list[int] = []
    seen = _statements(pg.engine)
    tracemalloc.start()
    report = _producer(pg, published).submit_many(read_jsonl(path), lane="batch",
                                                  collect_ids=False)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (report.accepted, report.rejected) == (ROWS, 0)
    assert seen["INSERT INTO requests"] == math.ceil(ROWS / chunk)  # one statement per chunk
    assert published == [chunk] * (ROWS // chunk) + [ROWS % chunk]  # one message per chunk
    # The file parsed whole would be ~25 MB of dicts and Lines; a chunk at a time is ~3 MB.
    assert peak_bytes < 10 * 2**20, f"producer peak {peak_bytes / 2**20:.1f} MiB"
    with pg.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(requests)
                            .where(requests.c.job_id == report.job_id)).scalar_one() == ROWS


def test_repeated_keys_count_as_duplicates_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ingest.sqlite'}"
    upgrade(url)
    rt = _runtime(url)
    published: list[int] = []
    report = _producer(rt, published).submit_many(
        read_jsonl(_write(tmp_path / "dups.jsonl", 3_000, repeat_every=10)), lane="batch")
    assert (report.accepted, report.duplicates) == (2_701, 299)
    assert sum(published) == 2_701
    assert len(report.request_ids) == 3_000 and len(set(report.request_ids)) == 2_701


def test_a_bundles_outcomes_take_two_statements_and_repeat_harmlessly(pg: Runtime) -> None:
    client = _producer(pg, [])
    ids = client.submit_many([f"Labels: a, b\nText:\nitem {i}" for i in range(300)],
                             lane="batch").request_ids
    now_s = time.time()
    with pg.engine.begin() as conn:
        loaded = {r.id: r for r in records.load_requests(conn, ids)}
        records.record_decisions(conn, [Decision(i, "low", 0.1, "single", "t0", "instant-nano")
                                        for i in ids], now_s)
        jobs_by_request = records.job_of(conn, ids)
    made = [AttemptRow(i, 0, "instant-nano", "t0", True, None, 12, 1, False, 0.001, now_s)
            for i in ids]
    done = [ResultRow(i, "ok", "instant-nano", "a", None, now_s) for i in ids]
    prices = {"instant-nano": Price(Decimal("0.10"), Decimal("0.40"))}
    seen = _statements(pg.engine)
    for _ in range(2):  # a redelivered bundle writes nothing new
        with pg.engine.begin() as conn:
            records.record_outcomes(conn, made, done, prices, loaded, jobs_by_request)
    # attempts, charges and results: one statement for the three
    assert seen["WITH w0 AS"] == 2 and seen["INSERT INTO attempts"] == 0
    # the requests' status and their jobs' notification: one statement
    assert seen["WITH ended AS"] == 2 and seen["UPDATE requests SET"] == 0
    assert seen["SELECT pg_notify(%s,"] == 0
    with pg.engine.connect() as conn:
        usd = conn.execute(select(func.sum(charges.c.usd), func.count())
                           .where(charges.c.request_id.in_(ids))).one()
        assert usd == (Decimal("0.00048"), 300)  # 300 × (12 × 0.10 + 1 × 0.40) / 1e6
        assert conn.execute(select(func.count()).select_from(results)
                            .where(results.c.request_id.in_(ids))).scalar_one() == 300
        assert set(conn.execute(select(requests.c.status).where(requests.c.id.in_(ids)))
                   .scalars()) == {"done"}
