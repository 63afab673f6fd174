"""The beat schedule, and the Redis lock that keeps it to exactly one beat.

    celery -A tierline.schedules.beat beat -l INFO        # TIERLINE_BROKER_URL=redis://..., and
                                                  # TIERLINE_JOBS_DIR=folder of job YAMLs
    celery -A tierline.schedules.beat worker -Q schedules -c 2   # runs what beat sends

Entries: the stranded-request sweeper every 30 s, the watchdog every 15 s
(tierline.schedules.watchdog), the daily report at 00:15 UTC
(``$TIERLINE_REPORT_SCHEDULE``: another cron, UTC, or ``off``), the router's retraining
from shadow outcomes when the policy has ``learning`` (tierline.schedules.retrain;
``$TIERLINE_RETRAIN_SCHEDULE`` overrides its cron, ``off`` disables it), and each job file in
``$TIERLINE_JOBS_DIR`` that has a ``schedule`` (cron, UTC) as a nightly classification. The
schedule is built when beat starts, not at import. A job file or report schedule that does
not validate is logged and skipped: one broken entry must not stop the sweeper or the others.

Exactly one beat: every tick first holds ``tierline:beat:lock`` in Redis (``SET NX PX``,
renewed each tick by its holder only, released on shutdown). A second beat ticks too,
but sends nothing until the holder dies and the lock expires (``LOCK_TTL_S``), then takes
over. Ticks come at most ``LOCK_TTL_S / 3`` apart, so a live holder always renews in time.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler
from celery.schedules import crontab

from tierline.config.settings import Settings, settings_in_force
from tierline.schedules.nightly import SCHEDULES_QUEUE
from tierline.schedules.reports import REPORT_TASK
from tierline.schedules.retrain import RETRAIN_TASK, retrain_schedule_of
from tierline.schedules.watchdog import WATCH_EVERY_S
from tierline.workers.app import app

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 30.0
LOCK_KEY = "tierline:beat:lock"
LOCK_TTL_S = 30.0
REPORT_SCHEDULE = "15 0 * * *"  # the day before is over; its late results have settled

# Compare-and-set scripts: only the holder's token may renew or release the lock.
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")
_RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end")


def crontab_of(expr: str) -> crontab:
    """A Celery crontab from a five-field cron string (minute hour day month weekday)."""
    from tierline.producer.jobspec import cron_fields

    minute, hour, day, month, weekday = cron_fields(expr)
    return crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month,
                   day_of_week=weekday)


def build_schedule(jobs_dir: Path | None, *, sweep_every_s: float = SWEEP_EVERY_S,
                   report_schedule: str = REPORT_SCHEDULE, retrain_schedule: str = "off",
                   settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Beat entries: the sweeper, the daily report (unless ``report_schedule`` is ``off``),
    the router's retraining (unless ``retrain_schedule`` is ``off``), and one per scheduled
    job file in ``jobs_dir`` (whose ``${VAR}`` expand from ``settings``, default: the
    process's)."""
    # Beat is a producer (DESIGN's flow): job files are the front door's format.
    from tierline.producer.jobspec import load_job

    schedule: dict[str, dict[str, Any]] = {
        "sweep-stranded": {"task": "tierline.sweep_stranded", "schedule": sweep_every_s,
                           # a sweep that waited longer than its period is superseded
                           "options": {"queue": SCHEDULES_QUEUE, "expires": sweep_every_s}},
        "watchdog": {"task": "tierline.watch_requests", "schedule": WATCH_EVERY_S,
                     "options": {"queue": SCHEDULES_QUEUE, "expires": WATCH_EVERY_S}},
    }
    if report_schedule.strip().lower() != "off":
        try:
            schedule["daily-report"] = {"task": REPORT_TASK,
                                        "schedule": crontab_of(report_schedule),
                                        "options": {"queue": SCHEDULES_QUEUE}}
        except ValueError as exc:
            log.error("TIERLINE_REPORT_SCHEDULE: %s: no daily report scheduled (give a cron, "
                      "UTC, e.g. %r, or off)", exc, REPORT_SCHEDULE)
    if retrain_schedule.strip().lower() != "off":
        try:
            schedule["retrain-router"] = {"task": RETRAIN_TASK,
                                          "schedule": crontab_of(retrain_schedule),
                                          "options": {"queue": SCHEDULES_QUEUE}}
        except ValueError as exc:
            log.error("retrain schedule: %s: no retraining scheduled (give a cron, UTC, or "
                      "off)", exc)
    if jobs_dir is None:
        return schedule
    if not jobs_dir.is_dir():
        log.error("TIERLINE_JOBS_DIR=%s is not a folder: no classification jobs scheduled",
                  jobs_dir)
        return schedule
    for path in sorted([*jobs_dir.glob("*.yaml"), *jobs_dir.glob("*.yml")]):
        try:
            spec = load_job(path, settings=settings)
        except Exception as exc:  # noqa: BLE001 - logged with the file; the rest still runs
            log.error("job file skipped: %s", exc)
            continue
        if not spec.schedule:
            continue
        schedule[f"classify:{spec.name}"] = {
            "task": "tierline.classify_nightly", "schedule": crontab_of(spec.schedule),
            "args": [str(path.resolve())], "options": {"queue": SCHEDULES_QUEUE}}
    return schedule


def report_schedule_of(settings: Settings) -> str:
    """When the daily report runs: ``$TIERLINE_REPORT_SCHEDULE``, or ``REPORT_SCHEDULE``."""
    return settings.report_schedule or REPORT_SCHEDULE


class BeatLock:
    """A Redis lock with a token: taken with SET NX PX, renewed and released by its holder."""

    def __init__(self, client: Any, key: str = LOCK_KEY, ttl_s: float = LOCK_TTL_S,
                 token: str | None = None) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = token or f"{os.getpid()}:{uuid.uuid4().hex}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.held = False

    def acquire(self) -> bool:
        """Take the lock if it is free; True when this holder has it (now or already)."""
        if self.held:
            return self.renew()
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def renew(self) -> bool:
        """Push the expiry out again; False (and not held) if another holder has it now."""
        self.held = bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return self.held

    def release(self) -> None:
        """Give the lock up, if this holder still has it."""
        self._release(keys=[self.key], args=[self.token])
        self.held = False


class LockedTick:
    """Scheduler mixin: a tick sends nothing unless this beat holds the lock."""

    lock: BeatLock

    def setup_lock(self, lock: BeatLock) -> None:
        self.lock = lock
        self.max_interval = min(self.max_interval, lock.ttl_ms / 3000)  # type: ignore[has-type]

    def tick(self, *args: Any, **kwargs: Any) -> float:
        was_held = self.lock.held
        try:
            held = self.lock.acquire()
        except Exception as exc:  # noqa: BLE001 - Redis away: send nothing, try again
            log.warning("beat lock unreachable (%s): sending nothing", exc)
            self.lock.held = False
            return float(self.max_interval)
        if held != was_held:
            log.warning("beat lock %s %s", "taken: this beat sends" if held else
                        "lost: another beat holds", self.lock.key)
        if not held:
            return float(self.max_interval)
        return float(super().tick(*args, **kwargs))  # type: ignore[misc]

    def close(self) -> None:
        try:
            if self.lock.held:
                self.lock.release()
        finally:
            super().close()  # type: ignore[misc]


class LockedScheduler(LockedTick, PersistentScheduler):
    """Celery's persistent scheduler, with the schedule built at start and the beat lock."""

    def setup_schedule(self) -> None:
        import redis

        settings = settings_in_force()
        if not settings.broker_url.startswith(("redis://", "rediss://")):
            raise RuntimeError(f"beat needs Redis for its lock; TIERLINE_BROKER_URL is "
                               f"{settings.broker_url!r}")
        from tierline.router.policy import load_policy

        try:
            retrain = retrain_schedule_of(load_policy(settings.policy_path), settings)
        except Exception as exc:  # noqa: BLE001 - logged; the sweeper and the rest still run
            log.error("no retraining scheduled: %s", exc)
            retrain = "off"
        self.app.conf.beat_schedule = build_schedule(
            settings.jobs_dir, report_schedule=report_schedule_of(settings),
            retrain_schedule=retrain, settings=settings)
        super().setup_schedule()
        self.setup_lock(BeatLock(redis.Redis.from_url(settings.broker_url)))
        log.info("beat schedule: %s", ", ".join(sorted(self.app.conf.beat_schedule)))


app.conf.beat_scheduler = "tierline.schedules.beat:LockedScheduler"
app.conf.result_expires = None  # no result backend: no backend_cleanup entry
