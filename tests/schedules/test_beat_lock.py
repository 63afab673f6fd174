"""Exactly one beat: the Redis lock, with real Redis (db 2) and a holder that really dies."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from celery import Celery
from celery.beat import Scheduler

from tests.conftest import ROOT
from tierline.schedules.beat import BeatLock, LockedTick


@pytest.fixture()
def client(redis_url: str) -> Any:
    import redis

    return redis.Redis.from_url(redis_url)


@pytest.fixture()
def key() -> str:
    return f"test:beat:lock:{uuid.uuid4().hex}"


def test_two_holders_only_one_wins_and_only_the_winner_renews(client: Any, key: str) -> None:
    first, second = BeatLock(client, key, ttl_s=5), BeatLock(client, key, ttl_s=5)
    assert first.acquire() is True
    assert second.acquire() is False
    assert second.renew() is False  # a non-holder cannot extend the holder's lock
    assert first.renew() is True and 4000 < client.pttl(key) <= 5000
    second.release()  # a non-holder cannot release it either
    assert client.get(key) == first.token.encode()
    first.release()
    assert second.acquire() is True


def test_the_lock_expires_when_its_holder_dies(client: Any, key: str, redis_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import redis, sys, time; from tierline.schedules.beat import BeatLock; "
         f"lock = BeatLock(redis.Redis.from_url({redis_url!r}), {key!r}, ttl_s=0.5); "
         "assert lock.acquire(); print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        other = BeatLock(client, key, ttl_s=0.5)
        assert other.acquire() is False
        holder.kill()  # no release, no renewal: only the expiry frees the lock
        holder.wait()
        deadline = time.monotonic() + 3
        while not other.acquire():
            assert time.monotonic() < deadline, "the dead holder's lock never expired"
            time.sleep(0.05)
    finally:
        holder.kill()


class _Recording(LockedTick, Scheduler):
    """A beat that records what it would send instead of publishing."""

    sent: list[str]

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        self.sent.append(entry.name)


def test_a_second_beat_sends_nothing_until_the_first_one_stops(client: Any, key: str) -> None:
    app = Celery("beat-test", broker="memory://")
    app.conf.beat_schedule = {"every-tick": {"task": "t", "schedule": 0.01}}
    beats = []
    for _ in range(2):
        beat = _Recording(app, max_interval=1)
        beat.sent = []
        beat.setup_lock(BeatLock(client, key, ttl_s=3))
        beats.append(beat)
    first, second = beats
    assert first.max_interval == 1  # at most a third of the lock's TTL between ticks
    for _ in range(5):
        first.tick()
        second.tick()
        time.sleep(0.02)
    assert first.sent and not second.sent
    first.close()  # a clean shutdown releases the lock at once
    for _ in range(3):
        second.tick()
        time.sleep(0.02)
    assert second.sent
