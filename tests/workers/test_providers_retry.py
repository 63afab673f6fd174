"""The retry helper with a scripted clock and rng, and bundle fan-out with in-process fakes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import pytest

from tierline.router.errors import (
    DeadlineExceeded,
    MalformedResponse,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)
from tierline.workers.providers.base import Completion, ModelCall, TextStream
from tierline.workers.providers.fanout import run_calls
from tierline.workers.providers.instant import InstantProvider
from tierline.workers.providers.retry import call_with_retries

CALL = ModelCall(model="m", messages=[{"role": "user", "content": "hi"}], max_output_tokens=8)
ANSWER = Completion("ok", 1, 1, False, 0.0, "stop", "m")


class Clock:
    """A scripted wall clock: sleeping advances it, and each call's cost is added."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s
        self.slept_s: list[float] = []

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.now_s += seconds


class Ceiling(random.Random):
    """An rng whose full jitter always draws the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Scripted:
    """A provider that plays a script of outcomes, each taking ``cost_s`` of the clock."""

    def __init__(
        self, script: Sequence[Completion | ProviderError], clock: Clock, cost_s: float = 0.1
    ) -> None:
        self.script = list(script)
        self.clock = clock
        self.cost_s = cost_s
        self.timeouts_s: list[float] = []

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        self.timeouts_s.append(timeout_s)
        self.clock.now_s += self.cost_s
        outcome = self.script.pop(0)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        raise NotImplementedError


def retry(provider: Scripted, clock: Clock, budget_s: float = 60.0, **kwargs: float) -> Completion:
    return call_with_retries(
        provider, CALL, deadline_at=clock.now_s + budget_s, now=clock.now, sleep=clock.sleep,
        rng=Ceiling(), **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


# -- call_with_retries ----------------------------------------------------------------------


def test_unavailable_is_retried_with_exponential_backoff() -> None:
    clock = Clock()
    provider = Scripted([Unavailable("503"), MalformedResponse("cut"), ANSWER], clock)
    assert retry(provider, clock) is ANSWER
    assert clock.slept_s == [0.25, 0.5]


def test_full_jitter_draws_each_wait_between_zero_and_the_ceiling() -> None:
    clock = Clock()
    provider = Scripted([Unavailable("x")] * 3 + [ANSWER], clock)
    call_with_retries(
        provider, CALL, deadline_at=clock.now_s + 60, now=clock.now, sleep=clock.sleep,
        rng=random.Random(7), max_attempts=4,
    )  # fmt: skip
    ceilings = [0.25, 0.5, 1.0]
    assert all(0 <= wait <= top for wait, top in zip(clock.slept_s, ceilings, strict=True))
    assert clock.slept_s != ceilings


def test_rate_limited_waits_at_least_retry_after() -> None:
    clock = Clock()
    provider = Scripted([RateLimited("429", retry_after_s=3.0), ANSWER], clock)
    assert retry(provider, clock) is ANSWER
    assert clock.slept_s == [3.0]


def test_rejected_is_never_retried() -> None:
    clock = Clock()
    provider = Scripted([Rejected("400"), ANSWER], clock)
    with pytest.raises(Rejected):
        retry(provider, clock)
    assert clock.slept_s == [] and len(provider.script) == 1


def test_gives_up_with_the_last_error_when_the_next_wait_would_pass_the_deadline() -> None:
    clock = Clock()
    provider = Scripted([Unavailable("first"), Unavailable("second"), ANSWER], clock)
    with pytest.raises(Unavailable, match="second"):
        retry(provider, clock, budget_s=0.7)  # 0.1 call + 0.25 wait + 0.1 call, next wait 0.5
    assert clock.slept_s == [0.25]


def test_rate_limit_longer_than_max_wait_is_raised_for_the_caller_to_defer() -> None:
    clock = Clock()
    provider = Scripted([RateLimited("429", retry_after_s=30.0), ANSWER], clock)
    with pytest.raises(RateLimited):
        retry(provider, clock, budget_s=3600, max_wait_s=5.0)
    assert clock.slept_s == []


def test_attempts_are_bounded() -> None:
    clock = Clock()
    provider = Scripted([Unavailable(str(n)) for n in range(5)], clock)
    with pytest.raises(Unavailable, match="2"):
        retry(provider, clock, max_attempts=3)
    assert len(provider.timeouts_s) == 3


def test_each_attempt_gets_the_remaining_budget_as_its_timeout() -> None:
    clock = Clock()
    provider = Scripted([Unavailable("x"), ANSWER], clock, cost_s=1.0)
    retry(provider, clock, budget_s=10.0)
    assert provider.timeouts_s == [10.0, pytest.approx(10.0 - 1.0 - 0.25)]


def test_timeout_is_capped_for_long_budgets() -> None:
    clock = Clock()
    provider = Scripted([ANSWER], clock)
    retry(provider, clock, budget_s=86400.0, max_timeout_s=90.0)
    assert provider.timeouts_s == [90.0]


def test_passed_deadline_raises_deadline_exceeded_without_calling() -> None:
    clock = Clock()
    provider = Scripted([ANSWER], clock)
    with pytest.raises(DeadlineExceeded):
        retry(provider, clock, budget_s=0.0)
    assert provider.timeouts_s == []


def test_a_timeout_as_the_budget_runs_out_is_the_deadline_not_the_model() -> None:
    clock = Clock()
    provider = Scripted([Unavailable("m: timed out (ReadTimeout)")], clock)
    provider.cost_s = 2.0  # the attempt used the whole budget
    with pytest.raises(DeadlineExceeded, match=r"timed out \(ReadTimeout\) \(the latency budget"):
        retry(provider, clock, budget_s=2.0)
    early = Scripted([Unavailable("m: timed out (ReadTimeout)")] * 4, clock)
    early.cost_s = 0.1  # a model that times out on its own, budget to spare
    with pytest.raises(Unavailable):
        retry(early, clock, budget_s=60.0)


# -- run_calls ------------------------------------------------------------------------------


class Sleepy:
    """A provider that takes ``latency_s`` of real time and records its peak concurrency."""

    def __init__(self, latency_s: float, fail_on: str | None = None) -> None:
        self.latency_s = latency_s
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.latency_s)
            text = call.messages[-1]["content"]
            if text == self.fail_on:
                raise RuntimeError("a bug in a provider")
            if text.startswith("reject"):
                raise Rejected(f"{call.model}: 400", model=call.model)
            return Completion(text, 1, 1, False, self.latency_s, "stop", call.model)
        finally:
            with self.lock:
                self.in_flight -= 1

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        raise NotImplementedError


def calls_of(model: str, texts: Sequence[str]) -> list[ModelCall]:
    return [
        ModelCall(model=model, messages=[{"role": "user", "content": t}], max_output_tokens=8,
                  key=t)
        for t in texts
    ]


def test_run_calls_returns_outcomes_in_input_order_capturing_each_failure() -> None:
    texts = ["a", "reject-b", "c", "boom", "e"]
    calls = calls_of("m", texts) + calls_of("unknown", ["f"])
    outcomes = run_calls(
        calls, {"m": Sleepy(0.01, fail_on="boom")}, max_concurrency=8, deadline_at=time.time() + 5
    )
    assert [o.text for o in outcomes if isinstance(o, Completion)] == ["a", "c", "e"]
    assert isinstance(outcomes[1], Rejected)
    assert type(outcomes[3]) is ProviderError and isinstance(outcomes[3].__cause__, RuntimeError)
    assert isinstance(outcomes[5], Rejected) and "no provider" in str(outcomes[5])


def test_run_calls_bounds_concurrency_per_model() -> None:
    slow, fast = Sleepy(0.03), Sleepy(0.03)
    calls = calls_of("slow", [f"s{i}" for i in range(12)]) + calls_of("fast", ["f1", "f2"])
    outcomes = run_calls(
        calls, {"slow": slow, "fast": fast}, max_concurrency={"slow": 3, "fast": 2},
        deadline_at=time.time() + 5,
    )  # fmt: skip
    assert all(isinstance(o, Completion) for o in outcomes)
    assert slow.peak == 3 and fast.peak == 2


def test_run_calls_honours_each_calls_own_deadline() -> None:
    calls = calls_of("m", ["late", "fine"])
    now = time.time()
    outcomes = run_calls(
        calls, {"m": Sleepy(0.0)}, max_concurrency=4, deadline_at={"late": now - 1, "fine": now + 5}
    )
    assert isinstance(outcomes[0], DeadlineExceeded) and isinstance(outcomes[1], Completion)


def test_run_calls_gives_up_waiting_for_a_slot_at_the_deadline() -> None:
    calls = calls_of("m", ["one", "two"])
    started = time.monotonic()
    outcomes = run_calls(
        calls, {"m": Sleepy(0.3)}, max_concurrency=1, deadline_at=time.time() + 0.1
    )
    assert time.monotonic() - started < 1.0
    assert sum(isinstance(o, DeadlineExceeded) for o in outcomes) >= 1


def test_run_calls_with_the_instant_provider_answers_every_call() -> None:
    calls = calls_of("instant", [f"Labels: yes, no\nis {i} even?" for i in range(200)])
    outcomes = run_calls(
        calls, {"instant": InstantProvider()}, max_concurrency=16, deadline_at=time.time() + 5
    )
    assert all(isinstance(o, Completion) and o.text in ("yes", "no") for o in outcomes)
