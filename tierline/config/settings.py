"""Everything tierline reads from the environment, read once, in one place: :func:`load_settings`.

Every ``TIERLINE_*`` variable is read here and nowhere else (docs/operations.md lists them);
the rest of the code takes a :class:`Settings`, or the one value it needs, as an argument.
The environment itself travels along (``Settings.env``) only for the variables that the policy
and the job files name: API keys, model endpoints, ``${VAR}`` in a job file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tierline.config.lease import DEFAULT_VISIBILITY_S, Lease
from tierline.router.errors import InvalidInput

EMBEDDED_BROKER = "memory://"
GATEWAY_CALLS = ("queue", "inline")  # TIERLINE_GATEWAY_CALLS: see Settings.gateway_calls
POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_ENV = "TIERLINE_VISIBILITY_TIMEOUT_S"


@dataclass(frozen=True)
class Settings:
    """Connection strings, the policy file and the deployment's switches; ``embedded`` when no
    servers are configured."""

    broker_url: str
    database_url: str
    policy_path: Path
    redis_url: str | None = None  # the absorber's counters; None: in-memory (embedded)
    broker_keyprefix: str | None = None  # several deployments (or test runs) share one Redis db
    visibility_s: float = DEFAULT_VISIBILITY_S  # the broker's visibility timeout (config.lease)
    home: Path | None = None  # the data directory; None: the default (see data_dir)
    data_path: Path = PROJECT_ROOT.parent / "shared" / "data"  # job files' ${TIERLINE_DATA}
    metrics_port: str | None = None  # as given: a worker that cannot serve it runs without
    metrics_host: str = "0.0.0.0"
    jobs_dir: Path | None = None  # beat's folder of job files
    report_dir: Path | None = None  # where beat also writes each day's report page
    report_schedule: str | None = None  # beat's cron for the daily report; None: the default
    retrain_schedule: str | None = None  # beat's cron for retraining; None: the policy's
    bundle_dir: Path | None = None  # where retrained bundles go; None: beside the policy
    gateway_keys: Path | None = None  # the gateway's YAML file of keys
    # How a gateway sends the realtime bundles it routed: to the tier's queue, or answered in
    # its own process (tierline.workers.engine.inline; docs/gateway.md weighs the two).
    gateway_calls: str = "queue"
    # The environment these were read from: for the variables the policy and job files name.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def sqlite_path(self) -> Path | None:
        """The record's file when it is SQLite, else None."""
        if not self.database_url.startswith("sqlite:///"):
            return None
        return Path(self.database_url.removeprefix("sqlite:///"))

    @property
    def lease(self) -> Lease:
        """How long a task may hold its message, and what fits inside it."""
        return Lease(self.visibility_s)

    def child_env(self) -> dict[str, str]:
        """The environment for a child process (a worker, a migration) that must see these
        settings: the one they came from, with the settings written back."""
        env = dict(self.env)
        env["TIERLINE_POLICY"] = str(self.policy_path)
        env["TIERLINE_DATABASE_URL"] = self.database_url
        if self.embedded:
            env.pop("TIERLINE_BROKER_URL", None)
        else:
            env["TIERLINE_BROKER_URL"] = self.broker_url
        if self.redis_url is not None:
            env["TIERLINE_REDIS_URL"] = self.redis_url
        return env


_in_force: list[Settings] = []


def use_settings(settings: Settings | None) -> None:
    """Make ``settings`` this process's (the command line does, with its ``--policy``), before
    the process's runtime is first built; None goes back to the environment's."""
    _in_force.clear()
    if settings is not None:
        _in_force.append(settings)


def settings_in_force() -> Settings:
    """The settings :func:`use_settings` gave, else those the environment gives now."""
    return _in_force[0] if _in_force else load_settings()


def data_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded record lives, whatever folder a command runs in: ``TIERLINE_HOME``,
    else ``$XDG_DATA_HOME/tierline``, else ``~/.local/share/tierline``."""
    if env.get("TIERLINE_HOME"):
        return Path(env["TIERLINE_HOME"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "tierline"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "tierline"


def default_policy_path(env: Mapping[str, str]) -> Path:
    """``TIERLINE_POLICY`` if set, else ``policies/$TIERLINE_ENV.yaml`` (default ``dev``)."""
    if env.get("TIERLINE_POLICY"):
        return Path(env["TIERLINE_POLICY"])
    return POLICY_DIR / f"{env.get('TIERLINE_ENV', 'dev')}.yaml"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: this process's environment), every variable listed in
    docs/operations.md.

    With no URL set, the embedded default: in-memory broker and absorber, and the SQLite
    file ``tierline.sqlite`` in the data directory (see :func:`data_dir`). The absorber's
    counters (``TIERLINE_REDIS_URL``) default to a Redis broker's URL.
    """
    env = dict(os.environ if env is None else env)
    broker = env.get("TIERLINE_BROKER_URL") or EMBEDDED_BROKER
    gateway_calls = env.get("TIERLINE_GATEWAY_CALLS") or "queue"
    if gateway_calls not in GATEWAY_CALLS:
        raise InvalidInput(f"TIERLINE_GATEWAY_CALLS={gateway_calls!r}: use one of "
                         f"{', '.join(GATEWAY_CALLS)}")
    home = data_dir(env)
    return Settings(
        broker_url=broker,
        database_url=env.get("TIERLINE_DATABASE_URL") or f"sqlite:///{home / 'tierline.sqlite'}",
        policy_path=default_policy_path(env),
        redis_url=env.get("TIERLINE_REDIS_URL") or (broker if broker.startswith("redis") else None),
        broker_keyprefix=env.get("TIERLINE_BROKER_KEYPREFIX") or None,
        visibility_s=_seconds(env, VISIBILITY_ENV, DEFAULT_VISIBILITY_S),
        home=home,
        data_path=Path(env.get("TIERLINE_DATA") or PROJECT_ROOT.parent / "shared" / "data"),
        metrics_port=env.get("TIERLINE_METRICS_PORT") or None,
        metrics_host=env.get("TIERLINE_METRICS_HOST", "0.0.0.0"),
        jobs_dir=_path(env, "TIERLINE_JOBS_DIR"),
        report_dir=_path(env, "TIERLINE_REPORT_DIR"),
        report_schedule=env.get("TIERLINE_REPORT_SCHEDULE") or None,
        retrain_schedule=env.get("TIERLINE_RETRAIN_SCHEDULE") or None,
        bundle_dir=_path(env, "TIERLINE_BUNDLE_DIR"),
        gateway_keys=_path(env, "TIERLINE_GATEWAY_KEYS"),
        env=env,
        gateway_calls=gateway_calls,
    )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r}: not a number of seconds") from None
    if not value > 0:
        raise InvalidInput(f"{name}={raw!r}: must be more than 0 seconds")
    return value
