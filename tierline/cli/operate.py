"""``tierline`` commands that run and look after the stack: the workers, the gateway, the
metrics exporter, the schema, the sweep, the models' health and the policy check.

Heavy libraries are imported inside each command, as in :mod:`tierline.cli.main`, which
registers these.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tierline.cli.console import err, out
from tierline.router.lanes import LANES

if TYPE_CHECKING:
    from tierline.config.settings import Settings
    from tierline.producer.client import Client


def _settings() -> Settings:
    from tierline.config.settings import settings_in_force

    return settings_in_force()


def _session() -> AbstractContextManager[Any]:
    from tierline.cli.session import session

    return session(_settings())


def _client(rt: Any = None) -> Client:
    from tierline.cli.session import client_for

    return client_for(_settings(), rt)


@click.command()
@click.option("--role", type=click.Choice(["router", "tier", "shadow", "all"]), default="all")
@click.option("--lane", "lanes", type=click.Choice(LANES), multiple=True,
              help="Lanes to serve (repeatable; default all). Give realtime its own worker.")
@click.option("--concurrency", "-c", type=int, default=None)
@click.option("--pool", default=None, help="Celery pool (prefork, threads, gevent...).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(role: str, lanes: tuple[str, ...], concurrency: int | None, pool: str | None,
           celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker on the queues of a role, from the policy's tiers."""
    from tierline.router.policy import load_policy
    from tierline.workers.app import queues_for

    settings = _settings()
    policy = load_policy(settings.policy_path)
    queues = queues_for(policy, role, lanes or LANES)
    argv = [sys.executable, "-m", "celery", "-A", "tierline.workers.app", "worker", "-Q",
            ",".join(queues),
            "-l", "INFO"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if pool:
        argv += ["-P", pool]
    argv += list(celery_args)
    err.print(" ".join(argv), highlight=False)
    os.execve(sys.executable, argv, settings.child_env())  # the worker reads these settings


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to $TIERLINE_DATABASE_URL (Alembic upgrade head)."""
    from tierline.record.db import upgrade

    settings = _settings()
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    url = settings.database_url
    upgrade(url)
    out.print(f"schema at head: {url.split('@')[-1]}", highlight=False)


@click.command()
@click.option("--intake-timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds without a new request after which a validating job's intake "
                   "counts as interrupted (default: 900).")
def sweep(intake_timeout: float | None) -> None:
    """Enqueue accepted requests that never reached the broker (e.g. it was down), fail
    jobs whose intake was interrupted, and hand stalled batch intakes to the broker again."""
    from tierline.schedules.sweeper import (
        INTAKE_STALLED_AFTER_S,
        enqueue_stranded,
        fail_stalled_intakes,
        restart_batch_intakes,
    )
    from tierline.workers.runtime import runtime

    _client()  # an embedded record must exist
    rt = runtime()
    timeout = INTAKE_STALLED_AFTER_S if intake_timeout is None else intake_timeout
    for job_id in fail_stalled_intakes(rt, stalled_after_s=timeout):
        out.print(f"job {job_id} failed: its intake was interrupted; submit it again",
                  highlight=False)
    if rt.settings.embedded:  # in-memory queues end with this process: enqueueing answers nothing
        err.print("no TIERLINE_BROKER_URL set: nothing enqueued; `tierline resume JOB` answers a "
                  "job's unanswered requests in this process", highlight=False)
        return
    for job_id in restart_batch_intakes(rt, min_age_s=0.0, stalled_after_s=timeout):
        out.print(f"batch batch_{job_id}: its file is being read again (each line is written "
                  "once)", highlight=False)
    n = enqueue_stranded(rt, min_age_s=0.0, stalled_after_s=timeout)
    out.print(f"{n} stranded requests enqueued", highlight=False)
    from tierline.schedules.watchdog import watch

    done = watch(rt)  # what the watchdog on beat does every 15 s
    out.print(f"{done.resent} stalled requests re-enqueued, {done.expired} expired at their "
              "deadline", highlight=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9108, show_default=True)
def metrics(host: str, port: int) -> None:
    """Serve Prometheus metrics: queue depths, absorber use and breakers read from Redis at
    each scrape, at http://HOST:PORT/metrics."""
    from tierline.workers.metrics_exporter import serve

    serve(host, port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="0 picks a free port.")
@click.option("--keys", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML file mapping each tenant to its API keys (keys made with `tierline "
                   "keys create` are taken too); with neither, no key is asked for. "
                   "[env var: TIERLINE_GATEWAY_KEYS]")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One line per request on stderr: method, path, status, ms, request id, "
                   "tenant (never the prompt).")
def gateway(host: str, port: int, keys: Path | None, access_log: bool) -> None:
    """Serve the OpenAI-compatible HTTP gateway until Ctrl-C (or SIGTERM, as `docker stop`
    sends)."""
    import logging
    import signal

    from tierline.gateway import DEFAULT_LIMITS, make_app
    from tierline.gateway.keys_file import load_keys
    from tierline.gateway.server import Server, bind, config

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # the same orderly stop as Ctrl-C

    signal.signal(signal.SIGTERM, stop)

    keys = keys or _settings().gateway_keys
    accepted = load_keys(keys) if keys else None
    limits = DEFAULT_LIMITS
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    access = logging.INFO if access_log else logging.WARNING
    for name, level in (("tierline.gateway", logging.WARNING),
                        ("tierline.gateway.access", access)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
    with _session() as rt:
        app = make_app(_client(rt), keys=accepted, limits=limits)
        sock = bind(host, port, limits.backlog)
        out.print(f"tierline gateway on http://{host}:{sock.getsockname()[1]}/v1 "
                  "(Ctrl-C stops it)", highlight=False)
        if accepted is None:
            err.print("[yellow]no --keys: callers need a key only once `tierline keys create` "
                      "made one; until then every caller is tenant default[/yellow]",
                      highlight=False)
        server = Server(config(app, limits, host, port), limits.threads)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()


@click.command()
def models() -> None:
    """The policy's models by tier: prices, and what the model health registry learned from
    every worker's recent calls (latency; whether a model is left alone for failing)."""
    import time

    from rich.table import Table

    from tierline.router.live.latency import estimate
    from tierline.workers.runtime import runtime

    rt = runtime()
    names = [m for tier in rt.policy.tiers.values() for m in tier]
    names += [m for m in rt.policy.models if m not in names]
    health = rt.health.read(names)
    table = Table("tier", "model", "$/1M in / out", "calls", "latency", "typical call", "state",
                  title="models: prices, and the health learned from recent calls")
    now = time.time()
    for name in names:
        spec = rt.policy.models[name]
        h = health.get(name)
        e = estimate(name, h.latency) if h is not None else None
        try:
            tier = rt.policy.tier_of(name)
        except KeyError:  # an evaluator or verifier that no tier lists
            tier = "-"
        if h is not None and h.breaker.refusal(name, now):
            state = f"left alone {h.breaker.open_until - now:.0f} s more"
        else:
            state = f"{h.breaker.fails} failed in a row" if h and h.breaker.fails else "ok"
        table.add_row(
            tier, name, f"{spec.usd_per_1m_input:g} / {spec.usd_per_1m_output:g}",
            str(h.latency.calls) if h is not None else "0",
            "-" if e is None else f"{e.fixed_s:.2f} s + {e.per_token_s * 1000:.1f} ms/token",
            "-" if e is None else f"{e.expected_s(rt.policy.requests.max_output_tokens):.2f} s, "
                                  f"{e.typical_tokens:.0f} tokens", state)
    out.print(table)


@click.group()
def policy() -> None:
    """Policy files."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def policy_check(file: Path) -> None:
    """Validate a policy file; prints its tiers."""
    from tierline.router.policy import load_policy

    p = load_policy(file)
    tiers = "; ".join(f"{t}: {', '.join(m)}" for t, m in p.tiers.items())
    out.print(f"{file}: ok: {len(p.models)} models, tiers {tiers}", highlight=False)


OPERATIONS = (worker, db, sweep, metrics, gateway, models, policy)
