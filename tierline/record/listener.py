"""Wake producers waiting on a job when Postgres says its results were committed.

Workers send ``pg_notify`` in the transaction that writes a job's results
(:func:`tierline.record.db.notify_jobs`). A process listens on one connection, on a daemon thread,
however many of its calls wait: a gateway answering a hundred requests at once must not hold
a hundred connections. The thread runs while anyone waits, and for ``LINGER_S`` after the
last waiter leaves if it is connected (a gateway's next call would otherwise open a new
connection and wait for its LISTEN, every time); then it closes its connection. If it
cannot connect, or the connection breaks, every waiter is woken to look for itself, and
their polling carries on until it can listen again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Engine

from tierline.record.db import JOBS_CHANNEL

READY_S = 2.0  # how long a first waiter gives the connection to open
IDLE_CHECK_S = 0.1  # how often the thread looks whether anyone still waits
LINGER_S = 30.0  # how long the connection stays open with nobody waiting
RETRY_S = (0.5, 10.0)  # back-off between attempts to connect, first and longest


class Listener:
    """LISTENs on one connection and sets the events of the jobs it hears of."""

    def __init__(self, url: str, linger_s: float = LINGER_S) -> None:
        self.url = url
        self.linger_s = linger_s  # connected, it stays so this long after the last waiter
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._tried = threading.Event()  # the running thread's first LISTEN has succeeded or failed
        self._last_waiter_at = time.monotonic()

    @contextmanager
    def bell(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever ``job_id`` is notified, for as long as the block runs.
        Listening has begun (or failed) when the block starts, so a commit seen after the
        caller's first look at the job is not missed."""
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
            if self._thread is None:
                self._tried = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._tried,),
                                                daemon=True, name="tierline-listener")
                self._thread.start()
            tried = self._tried
        try:
            tried.wait(READY_S)
            yield event
        finally:
            with self._lock:
                events = self._waiters[job_id]
                events.discard(event)
                if not events:
                    del self._waiters[job_id]
                self._last_waiter_at = time.monotonic()

    def _run(self, tried: threading.Event) -> None:
        retry_s = RETRY_S[0]
        while self._anyone_waiting():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    tried.set()
                    retry_s = RETRY_S[0]
                    while self._anyone_waiting(self.linger_s):
                        for note in conn.notifies(timeout=IDLE_CHECK_S):
                            self._ring(note.payload)
                    return
            except psycopg.Error:
                tried.set()  # nobody waits for a connection that is not there: they poll
            self._ring_all()  # notifications may have been missed: every waiter looks
            time.sleep(retry_s)
            retry_s = min(retry_s * 2, RETRY_S[1])

    def _anyone_waiting(self, linger_s: float = 0.0) -> bool:
        with self._lock:
            if not self._waiters and time.monotonic() - self._last_waiter_at >= linger_s:
                self._thread = None
                return False
            return True

    def _ring(self, job_id: str) -> None:
        with self._lock:
            for event in self._waiters.get(job_id, ()):
                event.set()

    def _ring_all(self) -> None:
        with self._lock:
            for events in self._waiters.values():
                for event in events:
                    event.set()


_listeners: dict[tuple[int, str], Listener] = {}
_listeners_lock = threading.Lock()


def listener_for(engine: Engine) -> Listener | None:
    """This process's listener for the engine's database; None unless it is Postgres."""
    if engine.dialect.name != "postgresql":
        return None
    # The engine's URL names SQLAlchemy's driver (postgresql+psycopg://); libpq's does not.
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    key = (os.getpid(), url)  # a forked child opens its own
    with _listeners_lock:
        if key not in _listeners:
            _listeners[key] = Listener(url)
        return _listeners[key]
