"""Validation folds, side by side: one worker process per core.

Each fold trains every learned part on the rest of the data and replays its own items,
tens of seconds of numpy and Python apiece, so folds run in parallel processes, and so
may the final training beside them. The results are the same as a sequential run's: each
call is seeded, not scheduled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import TypeVar

from tierline.router.evaluation.dataset import Item

T = TypeVar("T")
Fold = tuple[Sequence[Item], Sequence[Item]]  # (fit, validate)


def default_jobs(n_folds: int) -> int:
    """One process per core this process may use, no more than there are folds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_folds, cores or 1))


def run_folds(job: Callable[[Sequence[Item], Sequence[Item]], T], folds: Sequence[Fold],
              jobs: int, done: Callable[[int], None] = lambda n: None) -> list[T]:
    """``job(fit, validate)`` of every fold, in fold order, ``jobs`` at a time (``job``
    must be picklable: a module-level function or a partial of one). ``done(n)`` hears how
    many have finished. The first failed fold's error is raised here, and the folds not yet
    started are cancelled."""
    return side_by_side([partial(job, fit, val) for fit, val in folds], jobs, done)


def side_by_side(calls: Sequence[Callable[[], T]], jobs: int,
                 done: Callable[[int], None] = lambda n: None) -> list[T]:
    """Every call's result, in order, ``jobs`` processes at a time (in this process when
    ``jobs`` is 1); calls start in order, so put the longest first. Each call must be
    picklable, like its result. The first failed call's error is raised here, and the calls
    not yet started are cancelled."""
    if jobs <= 1:
        results = []
        for n, call in enumerate(calls, start=1):
            results.append(call())
            done(n)
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(call) for call in calls]
        try:
            for n, future in enumerate(as_completed(futures), start=1):
                future.result()
                done(n)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        return [f.result() for f in futures]
