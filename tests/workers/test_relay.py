"""The relay's two stores, and calls that stream into a sink."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tierline.router.errors import Unavailable
from tierline.workers.engine.relay import (
    KEEP_S,
    Event,
    MemoryRelay,
    RedisRelay,
    Relay,
    Sink,
    end_streams,
)
from tierline.workers.providers.base import Completion, ModelCall, TextStream
from tierline.workers.providers.retry import call_with_retries


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def begin(self) -> None:
        self.seen.append(("begin", ""))

    def text(self, piece: str) -> None:
        self.seen.append(("text", piece))


class _Words:
    """A provider that streams a fixed answer word by word; ``fail_after`` words into its
    first ``failures`` attempts, it fails as an unavailable server would."""

    def __init__(self, answer: str, failures: int = 0, fail_after: int = 2) -> None:
        self.answer, self.failures, self.fail_after = answer, failures, fail_after

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        return Completion(self.answer, 3, len(self.answer.split()), False, 0.0, "stop", call.model)

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        failing = self.failures > 0
        self.failures -= 1

        def words() -> Iterator[str]:
            for i, word in enumerate(self.answer.split(" ")):
                if failing and i == self.fail_after:
                    raise Unavailable(f"{call.model}: connection lost mid-stream",
                                      model=call.model)
                yield word if i == 0 else " " + word

        return TextStream(words(), lambda: self.complete(call, timeout_s=timeout_s))


def _call(sink: _Recorder | None) -> ModelCall:
    return ModelCall(model="m", messages=[{"role": "user", "content": "hi"}], max_output_tokens=8,
                sink=sink)


def test_a_call_with_a_sink_streams_every_piece_into_it() -> None:
    sink = _Recorder()
    done = call_with_retries(_Words("the sea is calm"), _call(sink), deadline_at=time.time() + 5)
    assert done.text == "the sea is calm"
    assert sink.seen[0] == ("begin", "")
    assert "".join(t for kind, t in sink.seen if kind == "text") == done.text


def test_a_retried_call_begins_again_so_the_reader_can_void_the_broken_text() -> None:
    sink = _Recorder()
    done = call_with_retries(_Words("one two three four", failures=1), _call(sink),
                             deadline_at=time.time() + 5, sleep=lambda s: None)
    kinds = [kind for kind, _ in sink.seen]
    assert kinds.count("begin") == 2
    second = kinds.index("begin", 1)
    assert "".join(t for _, t in sink.seen[second + 1:]) == done.text == "one two three four"


def test_a_call_without_a_sink_is_not_streamed() -> None:
    class WholeOnly(_Words):
        def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
            raise AssertionError("streamed without a sink")

    done = call_with_retries(WholeOnly("x y"), _call(None), deadline_at=time.time() + 5)
    assert done.text == "x y"


@pytest.fixture(params=["memory", "redis"])
def relay(request: pytest.FixtureRequest) -> Relay:
    if request.param == "memory":
        return MemoryRelay()
    import redis

    # skipped without Redis, failed under CI=true
    return RedisRelay(redis.Redis.from_url(request.getfixturevalue("redis_url")))


def test_a_reader_gets_every_event_in_order_from_its_cursor(relay: Relay) -> None:
    rid = str(uuid.uuid4())
    Sink(relay, rid, "model-a").begin()
    relay.publish(rid, [Event("text", "hello"), Event("text", " world")])
    events, cursor = relay.read(rid, "", 0.1)
    assert events == [Event("begin", "model-a"), Event("text", "hello"), Event("text", " world")]
    relay.publish(rid, [Event("end")])
    more, cursor = relay.read(rid, cursor, 0.1)
    assert more == [Event("end")]
    assert relay.read(rid, cursor, 0.05) == ([], cursor)  # nothing new: waits, then empty
    assert relay.read(str(uuid.uuid4()), "", 0.05)[0] == []  # an unknown request: nothing


def test_a_blocked_reader_wakes_when_the_worker_writes(relay: Relay) -> None:
    rid = str(uuid.uuid4())
    threading.Timer(0.2, lambda: relay.publish(rid, [Event("text", "late")])).start()
    started = time.monotonic()
    events, _ = relay.read(rid, "", 5.0)
    assert events == [Event("text", "late")]
    assert time.monotonic() - started < 2.0


def test_empty_pieces_are_not_published() -> None:
    relay = MemoryRelay()
    Sink(relay, "r", "m").text("")
    assert relay.read("r", "", 0.01) == ([], "0")


def test_redis_streams_expire(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    rid = str(uuid.uuid4())
    RedisRelay(client).publish(rid, [Event("text", "x")])
    assert 0 < client.ttl(RedisRelay.key(rid)) <= KEEP_S


def test_only_a_strategy_that_accepts_the_first_answer_relays() -> None:
    from tierline.router.strategy_spec import StrategySpec
    from tierline.workers.engine.calls import relays

    assert relays(StrategySpec(kind="single"))
    # a cascade may replace the first answer, so nothing is shown before it is accepted
    assert not relays(StrategySpec(kind="cascade", confidence_bar=0.8))
    assert not relays(StrategySpec(kind="parallel"))


class Down:
    def publish(self, request_id: str, events: object) -> None:
        raise ConnectionError("Redis is down")

    def read(self, request_id: str, cursor: str, block_s: float) -> tuple[list[Event], str]:
        raise ConnectionError("Redis is down")


def test_ending_streams_on_a_failing_relay_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    end_streams(Down(), ["a", "b"])
    assert "cannot tell 2 streamed requests' readers" in caplog.text
    relay = MemoryRelay()
    end_streams(relay, ["c"])
    assert relay.read("c", "", 0.01)[0] == [Event("end")]


def test_a_relay_that_fails_never_fails_the_call() -> None:
    sink = Sink(Down(), "r", "m")
    call = ModelCall(model="m", messages=[{"role": "user", "content": "hi"}], max_output_tokens=8,
                sink=sink)
    done = call_with_retries(_Words("still answered"), call, deadline_at=time.time() + 5)
    assert done.text == "still answered" and sink.broken
