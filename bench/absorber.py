"""Bench the Redis absorber: reservations per second (1 and 4 processes) and added latency.

    python bench/absorber.py [--runs 3] [--seconds 2] [--url redis://127.0.0.1:6379/5]

Every figure is the median of ``--runs`` runs. All processes reserve on one scope (one
model), the contended case; limits are high enough never to refuse, so every call takes the
full reserve path (expiry sweep, day roll, minute window). "Redis time per reservation" is
the server's own EVALSHA time (INFO commandstats) over reservations made: Redis runs scripts
one at a time, so it bounds the fleet's rate however many workers there are. Keys use a
unique prefix per measurement, deleted after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from tierline.router.live.absorber import Limits  # noqa: E402
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore  # noqa: E402
from tierline.workers.stores.absorber_redis import RedisAbsorberStore  # noqa: E402

LIMITS = Limits(tokens_per_day=10**15, tokens_per_minute=10**15, requests_per_minute=10**12)
ESTIMATE = 500
SPAWN = multiprocessing.get_context("spawn")


def reserve_rate(url: str, prefix: str, seconds: float, batch: int) -> tuple[int, float]:
    """Reservations made in ``seconds`` by one process, singly (batch 1) or in bundles."""
    store = RedisAbsorberStore(redis.Redis.from_url(url), prefix, ttl_s=600.0)
    store.usage("m", LIMITS)  # loads the script and opens the connection before timing
    count = 0
    start_s = time.perf_counter()
    while (elapsed_s := time.perf_counter() - start_s) < seconds:
        if batch == 1:
            store.reserve("m", LIMITS, ESTIMATE)
            count += 1
        else:
            count += len(store.reserve_many("m", LIMITS, [ESTIMATE] * batch).granted)
    return count, elapsed_s


def _worker(url: str, prefix: str, seconds: float, batch: int, go: object, out: object) -> None:
    go.wait()  # type: ignore[attr-defined]
    out.put(reserve_rate(url, prefix, seconds, batch))  # type: ignore[attr-defined]


def reserve_rate_procs(url: str, prefix: str, seconds: float, batch: int, procs: int) -> float:
    """Reservations per second of ``procs`` processes reserving on one scope at once."""
    go, out = SPAWN.Event(), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_worker, args=(url, prefix, seconds, batch, go, out))
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.5)  # let every process import and connect before the start signal
    go.set()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(c for c, _ in results) / max(e for _, e in results))


def cycle_latency_us(url: str, prefix: str, cycles: int, batch: int) -> tuple[float, float]:
    """p50 and p99 of reserving then settling ``batch`` calls (1: reserve + settle), in µs."""
    store = RedisAbsorberStore(redis.Redis.from_url(url), prefix, ttl_s=600.0)
    store.usage("m", LIMITS)
    samples = []
    for _ in range(cycles):
        start_s = time.perf_counter()
        if batch == 1:
            store.settle(store.reserve("m", LIMITS, ESTIMATE), ESTIMATE // 2)
        else:
            granted = store.reserve_many("m", LIMITS, [ESTIMATE] * batch).granted.values()
            store.settle_many([(held, ESTIMATE // 2) for held in granted])
        samples.append((time.perf_counter() - start_s) * 1e6)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def memory_rate(seconds: float) -> float:
    """Reserve + settle pairs per second of the in-memory store, for contrast."""
    store = MemoryAbsorberStore(ttl_s=600.0)
    count = 0
    start_s = time.perf_counter()
    while time.perf_counter() - start_s < seconds:
        store.settle(store.reserve("m", LIMITS, ESTIMATE), ESTIMATE // 2)
        count += 1
    return count / (time.perf_counter() - start_s)


@contextmanager
def fresh_prefix(client: redis.Redis) -> Iterator[str]:
    """A unique key prefix for one measurement, its keys deleted afterwards."""
    prefix = f"bench:absorber:{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def evalsha_usec(client: redis.Redis) -> float:
    """Microseconds Redis has spent in EVALSHA since it started (all clients)."""
    return float(client.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))


def main() -> None:
    """Run every measurement ``--runs`` times and print a Markdown table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--procs", type=int, default=4)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    figures: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(args.runs):
        for batch in (1, args.batch):
            label = "reserve (one call each)" if batch == 1 else f"reserve_many ({batch} per call)"
            with fresh_prefix(client) as prefix:
                before = evalsha_usec(client)
                count, elapsed_s = reserve_rate(args.url, prefix, args.seconds, batch)
                used_usec = evalsha_usec(client) - before
                record(f"1 process, {label}", count / elapsed_s)
                record(f"Redis time per reservation, {label} (µs)", used_usec / count)
            with fresh_prefix(client) as prefix:
                rate = reserve_rate_procs(args.url, prefix, args.seconds, batch, args.procs)
                record(f"{args.procs} processes, {label}", rate)
        with fresh_prefix(client) as prefix:
            p50_us, p99_us = cycle_latency_us(args.url, prefix, 5_000, 1)
        record("added latency per call, reserve + settle, p50 (µs)", p50_us)
        record("added latency per call, reserve + settle, p99 (µs)", p99_us)
        with fresh_prefix(client) as prefix:
            p50_us, p99_us = cycle_latency_us(args.url, prefix, 500, args.batch)
        label = f"per bundle of {args.batch}, reserve_many + settle_many"
        record(f"added latency {label}, p50 (µs)", p50_us)
        record(f"added latency {label}, p99 (µs)", p99_us)
        record("memory store, reserve + settle pairs", memory_rate(args.seconds))

    redis_version = client.info("server")["redis_version"]
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, Redis {redis_version} on localhost, "
        f"median of {args.runs} runs of {args.seconds:g} s\n"
    )
    print("| measurement | median | runs |\n|---|---:|---|")
    for name, values in figures.items():
        unit = "" if "µs" in name else "/s"
        digits = 1 if "Redis time" in name else 0
        runs = ", ".join(f"{v:,.{digits}f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.{digits}f}{unit} | {runs} |")


if __name__ == "__main__":
    main()
