"""The embedded default: broker, workers, database and simulator in one process.

The same Celery tasks as in production run in real Celery worker controllers on threads,
fed by kombu's in-memory transport; the record is a SQLite file (migrated by Alembic);
the models are the simulator on a loopback port. Nothing here is a substitute code path:
only the transports differ. As in production, the realtime lane has a worker of its own
(see ``tierline.workers.dedicated``), so a batch flood never holds the threads realtime needs.
"""

from __future__ import annotations

import atexit
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tierline.config.settings import EMBEDDED_BROKER, Settings, settings_in_force
from tierline.record.db import upgrade
from tierline.router.errors import InvalidInput
from tierline.router.policy import LANES, load_policy
from tierline.workers.app import app, queues_for, use_broker
from tierline.workers.dedicated import DedicatedWorker
from tierline.workers.runtime import Runtime, install

SIM_URL_ENV = "TIERLINE_SIM_URL"
REALTIME = ("realtime",)
OTHER_LANES = tuple(lane for lane in LANES if lane not in REALTIME)


@contextmanager
def embedded(policy_path: Path, *, database: Path | None = None, concurrency: int = 8,
             sim_seed: int = 0, sim_config: Path | None = None,
             gold: dict[str, str] | None = None, settings: Settings | None = None
             ) -> Iterator[Runtime]:
    """Run tierline in this process until the block ends; yields the installed runtime.
    ``concurrency`` threads in all: a quarter (at least 2) for the realtime lane, the rest
    for the other lanes; ``sim_config`` overrides the simulated models' profiles.
    ``settings`` (default: the process's) give the rest: the lease, the environment the
    policy's variables are read from. The process-wide state it sets (the app's broker and
    the runtime) is put back after."""
    from tierline.sim.fleet import fleet_from_policy
    from tierline.sim.server import start

    policy = load_policy(policy_path)
    with tempfile.TemporaryDirectory(prefix="tierline-") as tmp:
        db_path = database or Path(tmp) / "tierline.sqlite"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        given = settings or settings_in_force()
        here = replace(given, broker_url=EMBEDDED_BROKER, database_url=f"sqlite:///{db_path}",
                       policy_path=policy_path, redis_url=None)
        upgrade(here.database_url)
        with start(fleet_from_policy(policy_path, sim_config, seed=sim_seed), gold=gold) as sim:
            # Embedded means simulated: every model's endpoint is the in-process simulator.
            env = dict(given.env)
            for spec in policy.models.values():
                if spec.base_url_env:
                    env[spec.base_url_env] = sim.url
            env[SIM_URL_ENV] = sim.url
            rt = Runtime(here, policy, env)
            saved_rt = install(rt)
            saved_broker = use_broker(EMBEDDED_BROKER, {"polling_interval": 0.01})
            realtime_threads = max(2, concurrency // 4)
            workers = [
                _start_worker(queues_for(policy, "all", REALTIME), realtime_threads,
                              "embedded-realtime"),
                _start_worker(queues_for(policy, "all", OTHER_LANES),
                              max(1, concurrency - realtime_threads), "embedded-other"),
            ]
            try:
                yield rt
            finally:
                for worker in workers:
                    worker.stop(in_sighandler=False)
                install(saved_rt)
                use_broker(*saved_broker)


_process_stack: list[Runtime] = []


def process_stack(settings: Settings) -> Runtime:
    """The embedded stack for the rest of this process (the Python API's default when no
    broker is set): started on first use on the record ``settings`` name, stopped at exit."""
    if not _process_stack:
        stack = embedded(settings.policy_path, database=record_path(settings), settings=settings)
        _process_stack.append(stack.__enter__())
        atexit.register(stack.__exit__, None, None, None)
    return _process_stack[0]


def resume_unfinished(client: Any, job_ids: list[str]) -> None:
    """Enqueue again the unanswered requests of earlier jobs that a resubmission returned:
    the in-memory broker of the process that accepted them ended with it."""
    for job_id in job_ids:
        if not client.status(job_id).complete:
            client.resume(job_id)


def record_path(settings: Settings) -> Path:
    """The embedded record's SQLite file."""
    path = settings.sqlite_path
    if path is None:
        raise InvalidInput(f"the embedded stack keeps its record in SQLite, not "
                         f"{settings.database_url.split('@')[-1]}; set TIERLINE_BROKER_URL too")
    return path


def _start_worker(queues: list[str], concurrency: int, name: str) -> DedicatedWorker:
    """A real Celery worker on a daemon thread, consuming ``queues`` and no others."""
    worker = DedicatedWorker(app, queues, pool_cls="threads", concurrency=concurrency,
                             hostname=f"{name}@{socket.gethostname()}",
                             without_heartbeat=True,
                             without_mingle=True, without_gossip=True, loglevel="WARNING")
    ready = threading.Event()
    worker.blueprint.on_start = ready.set  # type: ignore[attr-defined]
    thread = threading.Thread(target=worker.start, name=f"tierline-{name}", daemon=True)
    thread.start()
    ready.wait(timeout=10)
    return worker
