"""A bundle's calls run concurrently: one process-wide thread pool sharing the one
``httpx.Client``, a per-model semaphore for the provider's concurrency limit, results in
input order with every failure captured per call."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from tierline.router.errors import DeadlineExceeded, ProviderError, Rejected
from tierline.workers.providers.base import Completion, ModelCall, Provider
from tierline.workers.providers.retry import MAX_ATTEMPTS, call_with_retries

Reply = Completion | ProviderError | DeadlineExceeded
DEFAULT_POOL_THREADS = 128  # threads only wait on sockets; the pool grows on demand

log = logging.getLogger(__name__)
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
# Process-wide, so concurrent bundles to one model share its limit. Keyed with the limit
# too: a reloaded policy with a new limit gets a new semaphore rather than a resized one.
_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _reset_in_child() -> None:
    """Threads do not survive fork, and locks held at fork time would never be released."""
    global _lock, _pool, _pool_pid
    _lock, _pool, _pool_pid = threading.Lock(), None, None
    _semaphores.clear()


os.register_at_fork(after_in_child=_reset_in_child)


def executor(*, max_threads: int = DEFAULT_POOL_THREADS) -> ThreadPoolExecutor:
    """This process's call pool; ``max_threads`` applies only to the call that creates it."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="tierline-call")
            _pool_pid = os.getpid()
        return _pool


def _semaphore(model: str, limit: int) -> threading.BoundedSemaphore:
    """The process-wide slot counter for ``model`` at ``limit``."""
    with _lock:
        return _semaphores.setdefault((model, limit), threading.BoundedSemaphore(limit))


def run_calls(
    calls: Sequence[ModelCall],
    providers: Mapping[str, Provider],
    *,
    max_concurrency: int | Mapping[str, int],
    deadline_at: float | Mapping[Hashable, float],
    max_attempts: int = MAX_ATTEMPTS,
    now: Callable[[], float] = time.time,
) -> list[Reply]:
    """Run ``calls`` concurrently; each outcome in input order is a Completion or the error.

    ``providers`` and ``max_concurrency`` are keyed by ``ModelCall.model``; ``deadline_at`` is one
    epoch time for the bundle or a mapping from ``ModelCall.key``. Never raises for a call's
    failure. A lone call runs in the calling thread: handing it to the pool and waiting for
    it costs two thread switches and nothing runs meanwhile.
    """
    work = [partial(_run_one, call, providers.get(call.model),
                    _limit(max_concurrency, call.model),
                    deadline_at if isinstance(deadline_at, (int, float))
                    else deadline_at[call.key], max_attempts, now) for call in calls]
    if len(work) == 1:
        return [work[0]()]
    pool = executor()
    futures = [pool.submit(one) for one in work]
    return [future.result() for future in futures]


def _limit(max_concurrency: int | Mapping[str, int], model: str) -> int:
    """The concurrency bound for ``model``: the mapping's entry, or the one number for all."""
    if isinstance(max_concurrency, int):
        return max_concurrency
    return max_concurrency.get(model, 1)  # an unlisted model gets the cautious bound


def _run_one(
    call: ModelCall,
    provider: Provider | None,
    limit: int,
    deadline_at: float,
    max_attempts: int,
    now: Callable[[], float],
) -> Reply:
    """One call inside its model's slot; any failure becomes the returned outcome."""
    try:
        if provider is None:
            return Rejected(f"{call.model}: no provider configured", model=call.model)
        slots = _semaphore(call.model, limit)
        remaining_s = deadline_at - now()
        if remaining_s <= 0 or not slots.acquire(timeout=remaining_s):
            return DeadlineExceeded(f"{call.model}: deadline passed waiting for a call slot")
        try:
            return call_with_retries(
                provider, call, deadline_at=deadline_at, now=now, max_attempts=max_attempts
            )
        finally:
            slots.release()
    except (ProviderError, DeadlineExceeded) as error:
        return error
    except Exception as exc:
        # A bug in a provider must not lose the rest of the bundle; keep the traceback.
        log.exception("unexpected error calling %s", call.model)
        wrapped = ProviderError(f"{call.model}: unexpected {type(exc).__name__}: {exc}")
        wrapped.model = call.model
        wrapped.__cause__ = exc
        return wrapped
